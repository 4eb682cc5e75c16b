"""Tiny random-weight diffusers checkpoints, built offline in the real on-disk layout.

Each builder makes the real pipeline class from small configs (2 layers, a few channels), with tokenizers made from
an in-memory vocabulary, and writes it with ``save_pretrained``: the folder has the same ``model_index.json``,
component subfolders, safetensors weights and tokenizer files as the published checkpoint, so Kinema loads it with
the same loader a user's download goes through. Recipes: /work/shared/reference/offline-testing.md and the
``get_dummy_components`` of diffusers' own tests.

>>> from pathlib import Path
>>> path = build("wan-t2v", Path("/tmp/tiny-wan"))  # doctest: +SKIP
"""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

WORDS = "a the of in on with cat dog monkey dance dancing video red blue sky sea man woman running ball".split()
CHARS = list(string.ascii_lowercase + string.digits + ".,!?'-")


def t5_tokenizer() -> Any:
    from transformers import T5Tokenizer

    vocab = (
        [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
        + [("▁" + w, -1.0) for w in WORDS]
        + [(c, -5.0) for c in CHARS + list(string.ascii_uppercase)]
    )
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


def clip_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    merges: list[tuple[str, str]] = []
    for c in CHARS:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    for w in WORDS:
        syms = list(w[:-1]) + [w[-1] + "</w>"]
        cur = syms[0]
        for s in syms[1:]:
            merges.append((cur, s))
            cur += s
            vocab.setdefault(cur, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def llama_tokenizer() -> Any:
    from transformers import LlamaTokenizer

    vocab: dict[str, int] = {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3}
    merges: list[tuple[str, str]] = []
    for c in CHARS + list(string.ascii_uppercase):
        vocab.setdefault(c, len(vocab))
    for w in WORDS:
        cur = "▁"
        for ch in w:
            merges.append((cur, ch))
            cur += ch
            vocab.setdefault(cur, len(vocab))
    tok = LlamaTokenizer(vocab=vocab, merges=merges, model_max_length=256)
    tok.pad_token = "<unk>"
    return tok


def t5_encoder(umt5: bool = False, d_model: int = 32) -> Any:
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    cfg_cls, model_cls = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    torch.manual_seed(0)
    cfg = cfg_cls(
        vocab_size=256,
        d_model=d_model,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return model_cls(cfg).eval()


def clip_text_encoder(hidden: int = 32) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    cfg = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=256,
        projection_dim=32,
    )
    return CLIPTextModel(cfg).eval()


def _wan_transformer(
    in_channels: int, out_channels: int, image_dim: int | None = None, pos_embed_seq_len: int | None = None
) -> Any:
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=in_channels,
        out_channels=out_channels,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=image_dim,
        pos_embed_seq_len=pos_embed_seq_len,
    )


def _wan_vae() -> Any:
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )


def _flow_unipc(shift: float = 3.0) -> Any:
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift)


def wan_t2v() -> Any:
    """Wan2.1 T2V layout (Wan-AI/Wan2.1-T2V-1.3B-Diffusers): UMT5 + WanTransformer3DModel + AutoencoderKLWan."""
    from diffusers import WanPipeline

    return WanPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=t5_encoder(umt5=True),
        vae=_wan_vae(),
        transformer=_wan_transformer(16, 16),
        scheduler=_flow_unipc(3.0),
    )


def wan_i2v(first_last: bool = False) -> Any:
    """Wan2.1 I2V layout (Wan-AI/Wan2.1-I2V-14B-480P-Diffusers): adds a CLIP vision encoder and its processor.
    ``first_last``: the FLF2V layout (Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers), whose image embedder has a positional
    embedding over the two images' CLIP tokens (``pos_embed_seq_len``; 2 x 257 there, 2 x 65 for this tiny CLIP)."""
    from diffusers import WanImageToVideoPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=4,
        )
    ).eval()
    processor = CLIPImageProcessor(crop_size=32, size=32)
    return WanImageToVideoPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=t5_encoder(umt5=True),
        vae=_wan_vae(),
        transformer=_wan_transformer(36, 16, image_dim=32, pos_embed_seq_len=2 * 65 if first_last else None),
        scheduler=_flow_unipc(16.0 if first_last else 3.0),
        image_encoder=image_encoder,
        image_processor=processor,
    )


def wan_vace() -> Any:
    """Wan2.1 VACE layout (Wan-AI/Wan2.1-VACE-1.3B-diffusers): a WanVACETransformer3DModel, whose VACE blocks read
    the control latents (2 x 16 video channels + 8 x 8 mask channels = 96, as the published config)."""
    from diffusers import WanVACEPipeline, WanVACETransformer3DModel

    torch.manual_seed(0)
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        vace_layers=[0],
        vace_in_channels=96,
    )
    return WanVACEPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=t5_encoder(umt5=True),
        vae=_wan_vae(),
        transformer=transformer,
        scheduler=_flow_unipc(3.0),
    )


def wan22_a14b() -> Any:
    """Wan2.2 T2V-A14B layout: two transformers (high- and low-noise experts) and ``boundary_ratio``."""
    from diffusers import WanPipeline

    high, low = _wan_transformer(16, 16), _wan_transformer(16, 16)
    return WanPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=t5_encoder(umt5=True),
        vae=_wan_vae(),
        transformer=high,
        transformer_2=low,
        scheduler=_flow_unipc(12.0),
        boundary_ratio=0.875,
    )


def wan22_ti2v() -> Any:
    """Wan2.2 TI2V-5B layout: a 48-channel VAE with 16x spatial compression, ``expand_timesteps=True``."""
    from diffusers import AutoencoderKLWan, WanPipeline

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
    )
    return WanPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=t5_encoder(umt5=True),
        vae=vae,
        transformer=_wan_transformer(48, 48),
        scheduler=_flow_unipc(5.0),
        transformer_2=None,
        boundary_ratio=None,
        expand_timesteps=True,
    )


def ltx() -> Any:
    """LTX-Video layout (Lightricks/LTX-Video): T5 + LTXVideoTransformer3DModel + AutoencoderKLLTXVideo."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=2,
        caption_channels=32,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4,
        upsample_factor=(1,) * 4,
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    return LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=t5_encoder(),
        tokenizer=t5_tokenizer(),
        transformer=transformer,
    )


def ltx_condition() -> Any:
    """LTX-Video 0.9.7 / 0.9.8 layout (Lightricks/LTX-Video-0.9.8-13B-distilled): the same components in
    LTXConditionPipeline, with a timestep-conditioned VAE decoder as those releases have (``decode_timestep``)."""
    from diffusers import AutoencoderKLLTXVideo, LTXConditionPipeline

    parts = ltx().components
    torch.manual_seed(0)
    config = {k: v for k, v in parts["vae"].config.items() if not k.startswith("_")}
    parts["vae"] = AutoencoderKLLTXVideo(**{**config, "timestep_conditioning": True})
    return LTXConditionPipeline(**{k: v for k, v in parts.items() if not k.startswith("_")})


def ltx_upsampler() -> Any:
    """The latent upsampler in the layout of Lightricks/ltxv-spatial-upscaler-0.9.7 (an LTXLatentUpsamplePipeline:
    ``latent_upsampler/`` and ``vae/``), for the tiny LTX's 8 latent channels (32 middle channels: its GroupNorm
    takes 32 groups)."""
    from diffusers import LTXLatentUpsamplePipeline
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    torch.manual_seed(0)
    upsampler = LTXLatentUpsamplerModel(in_channels=8, mid_channels=32, num_blocks_per_stage=1, dims=3)
    return LTXLatentUpsamplePipeline(vae=ltx().vae, latent_upsampler=upsampler)


def _cogvideox_vae() -> Any:
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(0)
    return AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )


def cogvideox() -> Any:
    """CogVideoX T2V layout (THUDM/CogVideoX-2b): T5 + CogVideoXTransformer3DModel + AutoencoderKLCogVideoX."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel

    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=2,
        sample_width=2,
        sample_height=2,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
    )
    return CogVideoXPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=t5_encoder(),
        vae=_cogvideox_vae(),
        transformer=transformer,
        scheduler=CogVideoXDDIMScheduler(),
    )


def cogvideox_i2v() -> Any:
    """CogVideoX I2V layout (THUDM/CogVideoX-5b-I2V): the transformer takes the image latents too (2x channels)."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXImageToVideoPipeline, CogVideoXTransformer3DModel

    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=8,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=2,
        sample_width=2,
        sample_height=2,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
    )
    return CogVideoXImageToVideoPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=t5_encoder(),
        vae=_cogvideox_vae(),
        transformer=transformer,
        scheduler=CogVideoXDDIMScheduler(),
    )


def hunyuan() -> Any:
    """HunyuanVideo layout (hunyuanvideo-community/HunyuanVideo): Llama + CLIP text encoders, two tokenizers."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=1,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=32,
        rope_axes_dim=(2, 4, 4),
    )
    torch.manual_seed(0)
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )
    torch.manual_seed(0)
    llama = LlamaModel(
        LlamaConfig(
            hidden_size=16,
            intermediate_size=37,
            num_attention_heads=4,
            num_key_value_heads=4,
            num_hidden_layers=2,
            vocab_size=256,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    ).eval()
    return HunyuanVideoPipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=llama,
        tokenizer=llama_tokenizer(),
        text_encoder_2=clip_text_encoder(32),
        tokenizer_2=clip_tokenizer(),
    )


def svd() -> Any:
    """Stable Video Diffusion layout (stabilityai/stable-video-diffusion-img2vid): image-only conditioning."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=8,
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        latent_channels=4,
    )
    torch.manual_seed(0)
    # SVD resizes PIL images to 224x224 itself, so the tiny vision tower must take 224 (patch 32 keeps it cheap)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=224,
            intermediate_size=37,
            patch_size=32,
        )
    ).eval()
    return StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    )


def modelscope() -> Any:
    """ModelScope text-to-video layout (ali-vilab/text-to-video-ms-1.7b): CLIP + UNet3DConditionModel."""
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel

    torch.manual_seed(0)
    unet = UNet3DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=2,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8,),
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=32,
        norm_num_groups=2,
    )
    return TextToVideoSDPipeline(
        vae=vae, text_encoder=clip_text_encoder(32), tokenizer=clip_tokenizer(), unet=unet, scheduler=scheduler
    )


#: name -> (builder, a size and frame count the tiny checkpoint takes)
BUILDERS: dict[str, Callable[[], Any]] = {
    "wan-t2v": wan_t2v,
    "wan-i2v": wan_i2v,
    "wan-flf2v": lambda: wan_i2v(first_last=True),
    "wan-vace": wan_vace,
    "wan22-ti2v": wan22_ti2v,
    "wan22-a14b": wan22_a14b,
    "ltx": ltx,
    "ltx-condition": ltx_condition,
    "ltx-upsampler": ltx_upsampler,
    "cogvideox": cogvideox,
    "cogvideox-i2v": cogvideox_i2v,
    "hunyuan": hunyuan,
    "svd": svd,
    "modelscope": modelscope,
}


def build(name: str, folder: Path) -> Path:
    """Build the tiny checkpoint ``name`` and save it into ``folder`` in the diffusers layout."""
    pipe = BUILDERS[name]()
    pipe.save_pretrained(folder)
    return folder


# -- single-file checkpoints (GGUF) ----------------------------------------------------------------------------------

# diffusers' names -> the Wan authors' names: the inverse of diffusers' convert_wan_transformer_to_diffusers
# (loaders/single_file_utils.py), so a file written with these keys loads through the same converter a community
# GGUF file goes through.
_WAN_ORIGINAL_NAMES = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1.", "self_attn."),
    ("attn2.", "cross_attn."),
    (".to_out.0.", ".o."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    ("ffn.net.0.proj", "ffn.0"),
    ("ffn.net.2", "ffn.2"),
    ("proj_out", "head.head"),
]


def wan_original_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers WanTransformer3DModel state dict under the authors' key names (as GGUF files carry them)."""
    out = {}
    for key, value in state.items():
        name = "head.modulation" if key == "scale_shift_table" else key.replace(".scale_shift_table", ".modulation")
        for ours, theirs in _WAN_ORIGINAL_NAMES:
            name = name.replace(ours, theirs)
        # diffusers' norm2 is the authors' norm3 and the other way round
        name = name.replace(".norm2.", ".norm_x.").replace(".norm3.", ".norm2.").replace(".norm_x.", ".norm3.")
        out[name] = value
    return out


def write_wan_gguf(folder: Path, path: Path) -> tuple[Path, int]:
    """The tiny Wan's transformer as a GGUF file, Q8_0 where a row is a whole number of 32-value blocks (F32
    elsewhere, as llama.cpp's converters do for small tensors). Returns the path and how many tensors are Q8_0."""
    import gguf
    from diffusers import WanTransformer3DModel

    model = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer")
    writer = gguf.GGUFWriter(str(path), "wan")
    quantized = 0
    for name, tensor in wan_original_state_dict(model.state_dict()).items():
        array = tensor.detach().float().numpy()
        if array.ndim == 2 and array.shape[-1] % 32 == 0:
            data = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            quantized += 1
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path, quantized

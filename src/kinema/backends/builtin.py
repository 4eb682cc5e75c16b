"""The built-in backend: Kinema's own small video diffusion model, shipped in the package, run on the CPU.

It makes 128x128 clips (the shipped v2: the DiT in an autoencoder's latent; 64x64 with a v1 checkpoint) of 16 frames
at 8 fps in a couple of seconds, offline. Longer clips are made by extension: each further segment continues from
the last 4 frames of the one before (12 new frames per segment), so the frame count is 16 + 12k. Image-to-video
takes the image as frame 0 (centre-cropped to square and resized to the model's size); extension takes the last 4
frames of the given clip. The camera move is read from the prompt; ``options={"camera": "pan_left"}``
names it instead (one of ``kinema.builtin.world.CAMERAS``). ``options={"motion_guidance": 2.0}`` sets how hard the
first steps push the subject's motion (``kinema.builtin.sampling.sample``; 0: off; default: the checkpoint's own), and
``options={"image_guidance": 1.0}`` how hard a given image or clip is held through the clip (the same; it acts only
where frames are given), and ``options={"warp_reference": false}`` copies the given image in place rather than along
the camera's path (``kinema.builtin.model.ModelConfig.warp_reference``).

Editing (``source_video``, one segment of 16 frames) is SDEdit: the source's first 16 frames, noised to ``strength``
and denoised with the new prompt. Keyframes (``last_image``, and ``image``) are known frames at the clip's ends, one
segment; the shipped weights were trained with a known last frame in a tenth of their examples, so they draw towards
it (v1 weights were not: the clip jumps to it at the end, with a warning; docs/editing.md has the figures). Timed
keyframes (``keyframes``) are known frames at the frames nearest their times, in the same one segment; no weights
were trained with known frames inside the clip, so the frames around them are not steered (a warning says so).
Reference images are not supported.

>>> import kinema
>>> r = kinema.generate("a red ball bouncing on green grass", backend="builtin", seed=3, num_inference_steps=4)
>>> r.video.frames.shape
(16, 128, 128, 3)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..builtin import DEFAULT_GUIDANCE, image_defaults, is_checkpoint, motion_defaults, sampling_defaults
from ..builtin.world import CAMERAS
from ..errors import Cancelled, InvalidRequest
from ..media.io import resize_frames
from ..request import VideoRequest
from .base import (
    Availability,
    BackendOutput,
    BaseBackend,
    Capabilities,
    GenerationContext,
    GenerationParams,
    check_option_names,
)

__all__ = ["BuiltinBackend", "EDIT_GUIDANCE", "EDIT_GUIDANCE_INTERVAL"]

SEGMENT = 16  # frames the model makes at once
#: an edit starts below the default guidance interval (t >= 0.8), where guidance would never act: the prompt then
#: only steered through the conditional half (strength 0.3, 6 snowy world clips: the snow showed in 0 of 6 without
#: guidance, 1 of 6 with it at every step; the layout kept at 23 and 22 dB)
EDIT_GUIDANCE_INTERVAL = (0.0, 1.0)
#: an edit's guidance when the request gives none (strength below 1; at 1 an edit is text-to-video with its default).
#: At strength 0.3 on 6 clear-day world clips (render seed 5, sampling seed 11, 20 steps; docs/editing.md), edited to
#: "in heavy snow": snow seen in 1 of 6 at guidance 1.5, 5 at 3, 5 at 4, 6 at 5, while the layout (the luminance
#: correlation with the source, blind to a global colour change; 0.43 for another scene, 0.22 for text-to-video)
#: went 0.86, 0.71, 0.59, 0.48 (v1's weights). 3 shows the change and keeps the layout nearest the source. With v2's,
#: night at 0.45 shows in 3 of 6 at 3 and 0 at 1.5, its layout 0.78 (docs/editing.md).
EDIT_GUIDANCE = 3.0
MAX_MOTION_GUIDANCE = 10.0  # options.motion_guidance: a bound on typos (the v2 recipe measured 0 to 3; its own is 2)
MAX_IMAGE_GUIDANCE = 10.0  # options.image_guidance: the same (measured 0 to 3)
OVERLAP = 4  # frames an extension segment is conditioned on (one temporal patch)


def _checkpoint_plan(model: str | None) -> tuple[int, float]:
    """The square clip size of ``model``'s checkpoint (the weights in use for None or "builtin": 64 for v1, 128 for
    v2) and its default guidance, read from its header; v1's when it cannot be read (availability() then says why
    the weights are missing)."""
    from ..builtin import checkpoint_config, checkpoint_sampling

    path = None if model in (None, "builtin") else Path(str(model)).expanduser()
    try:
        return int(checkpoint_config(path).get("height", 64)), checkpoint_sampling(path)[0]
    except Exception:  # missing or not a checkpoint: resolve() and availability() give the clear error
        return 64, DEFAULT_GUIDANCE


def _square(frames: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop (..., H, W, 3) to a square and resize to size x size."""
    h, w = frames.shape[-3], frames.shape[-2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    cropped = frames[..., top : top + s, left : left + s, :]
    return resize_frames(np.ascontiguousarray(cropped), size, size)


def _edit_source(frames: np.ndarray, count: int, size: int) -> tuple[np.ndarray, str | None]:
    """The source clip as the model's (1, count, size, size, 3) input, and what was changed to make it so."""
    note = None
    if frames.shape[0] > count:
        note = f"source_video has {frames.shape[0]} frames; the built-in model edits the first {count}"
        frames = frames[:count]
    elif frames.shape[0] < count:  # a short clip: hold its last frame
        note = f"source_video has {frames.shape[0]} frames; its last frame is held to make {count}"
        frames = np.concatenate([frames, np.repeat(frames[-1:], count - frames.shape[0], 0)])
    h, w = frames.shape[1:3]
    if (h, w) != (size, size):
        crop = "" if h == w else ", centre-cropped to a square"
        note = (note + "; " if note else "") + f"source_video is {w}x{h}: resized to {size}x{size}{crop}"
    return _square(frames, size)[None], note


def _keyframes(params: GenerationParams, size: int) -> tuple[np.ndarray, list[int]]:
    """A keyframes request's known frames as the sampler takes them: (1, K, size, size, 3) and their frame indexes
    (a keyframes clip is one segment, so the last image lands at the segment's end)."""
    placed = params.known_frames()
    known = np.stack([_square(image, size) for _, image in placed])[None]
    return known, [index for index, _ in placed]


class BuiltinBackend(BaseBackend):
    name = "builtin"
    description = "Kinema's built-in model: 128x128 clips on any CPU, offline (text, image and clip to video)"

    def availability(self) -> Availability:
        from ..builtin import weights_path

        p = weights_path()
        if not p.is_file():
            return Availability.no(f"weights not found at {p} (reinstall kinema or run 'kinema train builtin')")
        return Availability.ok()

    def capabilities(self, model: str | None = None) -> Capabilities:
        size, default_guidance = _checkpoint_plan(model)
        return Capabilities(
            modes=("t2v", "i2v", "extend", "edit", "keyframes"),
            edit_max_frames=SEGMENT,  # one segment: a longer edit would need segments that agree at their seams
            keyframes_max_frames=SEGMENT,  # the last frame must land in the segment the model draws at once
            max_keyframes=SEGMENT,  # one per frame of that segment at most (two on one frame are refused)
            default_strength=0.6,
            default_size=(size, size),
            sizes=((size, size),),
            aspect_ratios=("1:1",),
            default_frames=SEGMENT,
            min_frames=SEGMENT,
            max_frames=SEGMENT + 12 * (SEGMENT - OVERLAP),
            frame_step=SEGMENT - OVERLAP,
            frame_offset=OVERLAP,
            default_fps=8.0,
            default_steps=20,
            max_steps=200,
            default_guidance=default_guidance,
            max_guidance=30.0,
            notes="trained on a procedural world of skies, landscapes, weather, simple subjects and camera moves; "
            "use 'kinema enhance --upscale' for larger output",
        )

    def models(self) -> list[str]:
        return ["builtin"]

    def resolve(self, request: VideoRequest, seed: int) -> GenerationParams:
        model = request.model
        if model not in (None, "builtin"):
            # a checkpoint of `kinema train builtin`; anything else would be recorded in the recipe but not used
            if not (model.endswith(".safetensors") and is_checkpoint(Path(model).expanduser())):
                raise InvalidRequest(
                    "model",
                    f"{model!r} is not a model of the built-in backend",
                    value=model,
                    allowed="builtin, or the path of a .safetensors checkpoint made by 'kinema train builtin'",
                )
            request = request.model_copy(update={"model": str(Path(model).expanduser().resolve())})
        params = super().resolve(request, seed)
        if params.mode == "edit" and request.guidance_scale is None and (params.strength or 0.0) < 1:
            params = params.with_(guidance_scale=EDIT_GUIDANCE)  # the recipe records it: --from gives the same
        # refused before acceptance
        check_option_names(
            self.name, params.options, ("camera", "motion_guidance", "image_guidance", "warp_reference")
        )
        if not isinstance(params.options.get("warp_reference", True), bool):
            value = params.options["warp_reference"]
            message = f"{value!r} is not true or false"
            raise InvalidRequest("options.warp_reference", message, value=value, allowed="true or false")
        for key, what, bound in (
            ("motion_guidance", "a motion", MAX_MOTION_GUIDANCE),
            ("image_guidance", "an image", MAX_IMAGE_GUIDANCE),
        ):
            scale = params.options.get(key, 0)
            number = isinstance(scale, (int, float)) and not isinstance(scale, bool)
            if not (number and 0 <= scale <= bound):
                raise InvalidRequest(
                    f"options.{key}",
                    f"{scale!r} is not {what} guidance scale",
                    value=scale,
                    allowed=f"a number from 0 (off) to {bound:g}",
                )
        camera = params.options.get("camera", "static")
        if camera not in CAMERAS:
            raise InvalidRequest(
                "options.camera",
                f"{camera!r} is not a camera move of the built-in model",
                value=camera,
                allowed=", ".join(CAMERAS),
            )
        return params

    def default_model(self) -> str | None:
        return "builtin"

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        from ..builtin import load_model
        from ..builtin.sampling import sample
        from ..video import Video

        ctx.progress("loading", 0, 1)
        model, tokenizer, info = load_model(None if params.model in (None, "builtin") else params.model)
        size = model.cfg.height
        warnings: list[str] = []
        unknown = tokenizer.unknown(params.prompt)
        if unknown:
            warnings.append(f"prompt words the built-in model does not know (ignored): {', '.join(unknown)}")
        if params.negative_prompt and tokenizer.unknown(params.negative_prompt):
            bad = ", ".join(tokenizer.unknown(params.negative_prompt))
            warnings.append(f"negative_prompt words the built-in model does not know (ignored): {bad}")

        if "camera" in params.options and model.cfg.warp_noise <= 0:
            warnings.append("options.camera has no effect with these weights (trained without warped noise)")
        known: np.ndarray | None = None
        num_known = 0
        if params.mode == "i2v" and params.image is not None:
            known, num_known = _square(params.image, size)[None, None], 1  # (1, 1, S, S, 3)
        elif params.mode == "extend" and params.video is not None:
            tail = params.video[-OVERLAP:]
            if tail.shape[0] < OVERLAP:  # a very short clip: repeat its first frame in front
                tail = np.concatenate([np.repeat(tail[:1], OVERLAP - tail.shape[0], 0), tail])
            known, num_known = _square(tail, size)[None], OVERLAP
        known_index: list[int] | None = None
        if params.mode == "keyframes":
            known, known_index = _keyframes(params, size)
            num_known = len(known_index)
            # weights trained with a known last frame (v2's p_keyframes) are steered towards it; older ones are not
            untrained = not float((info.get("train_config") or {}).get("p_keyframes") or 0.0) > 0
            if untrained and params.last_image is not None:
                warnings.append(
                    "last_image: the built-in weights were trained with known frames at the start only; "
                    "the clip jumps to the last image in its final frame (docs/editing.md)"
                )
            if params.keyframes:  # no recipe trains known frames inside the clip: v2 knew its ends, v1 the start
                ends = "the start and the end" if not untrained else "the start"
                warnings.append(
                    f"keyframes: the built-in weights were trained with known frames at {ends} only; "
                    "each image is written in at its frame, but the frames around it are not steered "
                    "towards it (docs/editing.md)"
                )
        init: np.ndarray | None = None
        strength = 1.0
        if params.mode == "edit" and params.source_video is not None:
            init, note = _edit_source(params.source_video, SEGMENT, size)
            warnings.extend([note] if note else [])
            strength = 1.0 if params.strength is None else params.strength

        segments = 1 + (params.num_frames - SEGMENT) // (SEGMENT - OVERLAP)
        steps = params.num_inference_steps or 20
        own_guidance, own_interval = sampling_defaults(info)  # the checkpoint's, else the package's
        own_motion, motion_interval = motion_defaults(info)
        motion = float(params.options.get("motion_guidance", own_motion))
        own_image, image_interval = image_defaults(info)
        image = float(params.options.get("image_guidance", own_image))
        warp = params.options.get("warp_reference")  # None: the checkpoint's own (ModelConfig.warp_reference)
        guidance = own_guidance if params.guidance_scale is None else params.guidance_scale
        if params.negative_prompt and guidance == 1.0:
            warnings.append(
                "negative_prompt has no effect at guidance_scale 1; give guidance_scale above 1 "
                f"(the built-in model's default is {own_guidance:g}) to steer away from it"
            )
        if init is not None:
            from ..builtin.sampling import edit_timesteps

            total = len(edit_timesteps(steps, strength, model.cfg.shift)) - 1  # sample's: the training shift
        else:
            total = segments * steps
        done = 0

        def on_step(step: int, _total: int) -> None:
            if ctx.cancel.cancelled:
                raise Cancelled("the generation was cancelled")
            ctx.progress("denoising", done + step, total)

        # strength 1 starts from pure noise: text-to-video, with its guidance, frame for frame
        interval = EDIT_GUIDANCE_INTERVAL if init is not None and strength < 1 else own_interval
        pieces: list[np.ndarray] = []
        for seg in range(segments):
            clip = sample(
                model,
                tokenizer,
                [params.prompt],
                steps=steps,
                guidance=guidance,
                seed=params.seed + seg,
                negative_prompt=params.negative_prompt,
                known=known,
                num_known=num_known,
                on_step=on_step,
                cameras=[params.options["camera"]] if "camera" in params.options else None,
                known_index=known_index,
                init=init,
                strength=strength,
                guidance_interval=interval,
                motion_guidance=motion,
                motion_interval=motion_interval,
                image_guidance=image,
                image_interval=image_interval,
                warp_reference=warp,
            )[0]
            assert isinstance(clip, np.ndarray)
            pieces.append(clip if seg == 0 else clip[OVERLAP:])
            known, num_known = clip[-OVERLAP:][None], OVERLAP
            done += steps
        frames = np.concatenate(pieces)[: params.num_frames]
        ctx.progress("decoding", 1, 1)
        return BackendOutput(
            video=Video(frames, fps=params.fps),
            warnings=warnings,
            # the file's hash: two fine-tunes of the same length are told apart, and so is a header's change
            model_revision=str(info.get("revision") or f"sha256:{info['sha256'][:16]}"),
        )

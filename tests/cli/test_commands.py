"""The ``kinema`` app as a whole: its commands, its entry points, and a CLI that works without any extra installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from kinema.cli import app, main
from kinema.cli.console import fail, parse_options
from kinema.errors import Cancelled, InvalidRequest, KinemaError, MissingExtra

runner = CliRunner()

#: the packages of the optional extras (local, cloud, server, workflows)
EXTRAS = (
    "huggingface_hub",
    "diffusers",
    "transformers",
    "accelerate",
    "peft",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "PIL",
    "yaml",
    "openai",
    "runwayml",
    "lumaai",
    "fal_client",
    "replicate",
    "google.genai",
    "jwt",
    "platformdirs",
    "multipart",
    "spandrel",
)


def test_cli_backends_lists_builtin() -> None:
    res = runner.invoke(app, ["backends", "--json"])
    assert res.exit_code == 0
    names = {b["name"]: b for b in json.loads(res.stdout)}
    assert names["builtin"]["usable"] is True


def test_every_area_registers_its_commands_in_order() -> None:
    names = list(get_command(app).commands)  # type: ignore[attr-defined]
    assert names[:9] == ["generate", "info", "backends", "train", "eval", "explain", "models", "pull", "resume"]
    workflows = ["prompt", "batch", "storyboard", "enhance", "concat", "thumbnail"]
    assert [n for n in names if n in workflows] == workflows
    assert {"serve", "worker", "keys"} <= set(names)


@pytest.mark.parametrize("module", ["kinema", "kinema.cli"])
def test_python_dash_m_is_the_kinema_command(module: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", module, "backends", "--json"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert "builtin" in {b["name"] for b in json.loads(res.stdout)}


def test_the_console_script_is_kinema_cli_main() -> None:
    (script,) = entry_points(group="console_scripts", name="kinema")
    assert script.value == "kinema.cli:main" and script.load() is main


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (InvalidRequest("size", "must be WIDTHxHEIGHT", value="big"), 2, "error: size: must be WIDTHxHEIGHT"),
        (Cancelled("stopped"), 130, "cancelled"),
        (KeyboardInterrupt(), 130, "cancelled"),
        (KinemaError("weights not found"), 1, "error: weights not found"),
        (MissingExtra("local", "diffusers"), 1, "pip install 'kinema[local]'"),  # [local] is not Rich markup
        (RuntimeError("boom [x]"), 1, "error: RuntimeError: boom [x]"),
    ],
)
def test_fail_prints_one_line_and_exits_with_the_code_of_the_failure(
    exc: BaseException, code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as exited:
        fail(exc)
    assert exited.value.exit_code == code
    assert message in capsys.readouterr().err.replace("\n", " ")


def test_parse_options_reads_json_values_and_refuses_what_is_not_key_value() -> None:
    assert parse_options(["a=1", "b=x", "c=[1, 2]", " d =true"]) == {"a": 1, "b": "x", "c": [1, 2], "d": True}
    assert parse_options(None) == {}
    with pytest.raises(InvalidRequest, match="^option: 'a' is not of the form KEY=VALUE"):
        parse_options(["a"])


def test_importing_the_cli_imports_no_optional_extra() -> None:
    code = f"import sys, kinema.cli; print([m for m in {EXTRAS!r} if m in sys.modules])"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_the_cli_works_without_any_extra_and_names_the_extra_a_command_needs() -> None:
    """Every command is listed with no extra installed; one that needs an extra says which to install."""
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys

        class NoExtras(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if any(name == m or name.startswith(m + ".") for m in {EXTRAS!r}):
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, NoExtras())
        from typer.testing import CliRunner
        from kinema.cli import app

        runner = CliRunner()
        results = {{}}
        for args in (["--help"], ["backends"], ["models"], ["serve"]):
            res = runner.invoke(app, args, terminal_width=200)
            results[" ".join(args)] = [res.exit_code, res.output, repr(res.exception)]
        print(json.dumps(results))
    """)
    env = {**os.environ, "COLUMNS": "250"}  # Rich's tables: one row per backend
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    results = json.loads(res.stdout)
    code, output, _ = results["--help"]
    assert code == 0
    for name in get_command(app).commands:  # type: ignore[attr-defined]
        assert f" {name} " in output, name
    code, output, _ = results["backends"]
    assert code == 0 and "builtin" in output and "pip install 'kinema[cloud]'" in output
    for args, extra in (("models", "local"), ("serve", "server")):
        code, output, exception = results[args]
        assert code == 1, (args, output, exception)
        assert f"pip install 'kinema[{extra}]'" in output, (args, output)
        assert "Traceback" not in output


def test_version_prints_without_a_command() -> None:
    """`kinema --version` answered "Missing command." and exit 2 although --help lists it."""
    from typer.testing import CliRunner

    from kinema import __version__
    from kinema.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"kinema {__version__}"

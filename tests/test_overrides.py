"""Text values on the command line (prompts above all): what Hydra's override grammar would
reject or silently change ends in one line naming the key and the quoting that works, and that
quoting keeps the text exactly."""

from __future__ import annotations

import re
import shlex

import pytest
from omegaconf import OmegaConf

from rnnlab.run.command import check
from rnnlab.utils.errors import ConfigError
from tests.conftest import compose_config
from tests.test_cli import _run

QUOTES_NOTE = "(Hydra's quotes inside the shell's)"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "prompt=def ",
            "error: prompt='def ' would lose its trailing whitespace (Hydra strips it from "
            f"unquoted values); type it as 'prompt=\"def \"' {QUOTES_NOTE}",
        ),
        (
            "prompt=héllo",
            "error: cannot parse the override prompt=héllo: Hydra's override grammar takes 'é' "
            f"only inside quotes; type it as 'prompt=\"héllo\"' {QUOTES_NOTE}",
        ),
    ],
)
def test_generate_refuses_a_prompt_hydra_would_reject_or_change(tmp_path, override, message):
    result = _run(["-m", "rnnlab.generate", "ckpt_path=x", override], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == message  # one line, before the checkpoint is even looked at
    assert "Traceback" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []


def _suggestion(message: str) -> str:
    """The override the message tells the user to type, as the shell passes it on."""
    typed = re.search(r"type it as (.+) \(Hydra's quotes", message)
    assert typed is not None, message
    [arg] = shlex.split(typed.group(1))
    return arg


@pytest.mark.parametrize(
    ("config", "key", "text"),
    [
        ("generate", "prompt", "def "),
        ("generate", "prompt", "  indented"),
        ("generate", "prompt", "λx"),
        ("generate", "prompt", "héllo wörld"),
        ("generate", "prompt", 'It\'s "quoted"!'),
        ("train", "+callbacks.text_sample.prompt", "def "),
    ],
)
def test_the_suggested_quoting_keeps_the_text_exactly(tmp_path, config, key, text):
    required = ["ckpt_path=x"] if config == "generate" else ["experiment=charlm"]
    with pytest.raises(ConfigError) as refused:
        check(config, [*required, f"{key}={text}"])
    assert str(refused.value).count(f"{key}=") >= 2  # names the key, and the fix
    assert "\n" not in str(refused.value)
    cfg = compose_config(config, [*required, _suggestion(str(refused.value))], tmp_path)
    assert OmegaConf.select(cfg, key.lstrip("+")) == text


def test_documented_quoting_composes_to_the_text(tmp_path):
    """The forms the documentation shows, as the shell hands them to Python."""
    for typed, text in [("'prompt=\"def \"'", "def "), ("prompt='\"héllo\"'", "héllo")]:
        [arg] = shlex.split(typed)
        check("generate", ["ckpt_path=x", arg])  # accepted as it is
        assert compose_config("generate", ["ckpt_path=x", arg], tmp_path).prompt == text


def test_plain_values_and_inner_spaces_pass_unchanged(tmp_path):
    check("generate", ["ckpt_path=x", "prompt=The  quick", "length=20 "])
    assert compose_config("generate", ["ckpt_path=x", "prompt=The  quick"], tmp_path).prompt == (
        "The  quick"
    )


def test_a_broken_list_names_the_override_and_both_readings():
    with pytest.raises(ConfigError) as refused:
        check("train", ["model.metrics=[acc,f1"])
    assert str(refused.value).startswith("cannot parse the override model.metrics=[acc,f1: ")
    assert "fix its brackets or commas" in str(refused.value)

"""The per-token decoder graph compiles on this torch (fast; the slow test checks it equals the eager step)."""

import torch

from flarelet.bindings.ai.asr import token_step


def test_token_step_scripts_instead_of_falling_back_to_eager():
    # A failure here is silent at run time (a logged warning, then ~15 % slower decoding), so it is tested.
    assert isinstance(token_step.SCRIPTED, torch.jit.ScriptFunction)

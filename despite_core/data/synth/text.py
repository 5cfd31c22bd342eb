"""Babel-like text for synthetic segments: several paraphrases per class."""
from __future__ import annotations

import numpy as np

PARAPHRASES: dict[str, tuple[str, ...]] = {
    "stand": ("stand", "a person stands still", "standing in place", "someone stands and waits", "stand idle"),
    "walk": ("walk", "a person walks", "walking forward", "someone walks across the room", "walk around"),
    "run": ("run", "a person runs", "running", "someone jogs quickly across the room", "run forward"),
    "jump": ("jump", "a person jumps", "jumping up and down", "jump in place", "someone hops on both feet"),
    "squat": ("squat", "a person squats", "squatting down and up", "do squats", "someone bends the knees deeply"),
    "sit down": ("sit down", "a person sits down", "sitting down on a chair", "someone takes a seat", "lower onto a seat"),
    "sitting": ("sit", "a person is sitting", "sitting still", "someone sits on a chair", "seated"),
    "stand up": ("stand up", "a person stands up", "getting up from a chair", "rise from sitting", "someone gets up"),
    "wave": ("wave", "a person waves", "waving a hand", "wave hello", "someone waves an arm overhead"),
    "clap": ("clap", "a person claps", "clapping hands", "applaud", "someone claps their hands together"),
    "punch": ("punch", "a person punches", "punching forward", "throw punches", "someone boxes the air"),
    "kick": ("kick", "a person kicks", "kicking a leg forward", "kick", "someone kicks with one foot"),
    "bend to pick up": ("pick up", "a person bends down to pick something up", "bend over", "pick up an object from the floor", "someone reaches down to the ground"),
    "turn in place": ("turn", "a person turns around", "turning in place", "turn around on the spot", "someone rotates in place"),
    "jumping jacks": ("jumping jacks", "a person does jumping jacks", "star jumps", "doing jumping jacks", "someone jumps spreading arms and legs"),
    # world edition 2
    "fall": ("fall", "a person falls down", "falling to the floor", "someone trips and falls", "collapse onto the ground"),
    "lying": ("lie", "a person is lying down", "lying on the floor", "someone lies still", "lying on the back"),
    "get up": ("get up", "a person gets up from the floor", "getting up off the ground", "someone stands back up", "rise from lying"),
}


def segment_text(activity: str, rng: np.random.Generator, untexted: float) -> str:
    """One paraphrase of ``activity``, or "" with probability ``untexted`` (an unannotated segment)."""
    if activity not in PARAPHRASES:
        raise KeyError(f"no paraphrases for activity {activity!r}")
    if rng.random() < untexted:
        return ""
    options = PARAPHRASES[activity]
    return options[int(rng.integers(len(options)))]

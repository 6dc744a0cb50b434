"""Run a tiny training in a subprocess and SIGKILL it at the N-th call of one function.

Usage: python -m tests.kill_runner POINT N OUTPUT_DIR [resume]   (POINT: none, sampling, reward,
surrogate, checkpoint). Used by test_kill_resume.py; nothing in lasro itself knows about it.
"""
import os
import signal
import sys

from lasro.training import checkpointing as ckpt
from lasro.generators import FewStepGenerator
from lasro.methods.lasro import LaSRO
from lasro.training import Trainer

from tests.conftest import tiny_train_config


def config(out):
    return tiny_train_config(out, "tiny:sdxl", algorithm={"rounds": 4}, logging={"checkpoints_total_limit": 2})


def kill_on_call(owner, name, nth):
    original = getattr(owner, name)
    calls = [0]

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(owner, name, wrapped)


def main(point, nth, out, resume=None):
    trainer = Trainer(config(out))
    targets = {"sampling": (FewStepGenerator, "sample"), "reward": (type(trainer.reward), "__call__"),
               "surrogate": (LaSRO, "surrogate_step"), "checkpoint": (ckpt, "_fsync_tree")}
    if point != "none":
        kill_on_call(*targets[point], int(nth))
    trainer.train(resume=resume)


if __name__ == "__main__":
    main(*sys.argv[1:])

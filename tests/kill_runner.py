"""Run a tiny training in a subprocess and interrupt it at the N-th call of one function.

Usage: python -m tests.kill_runner SIGNAL POINT N OUTPUT_DIR [resume]
  SIGNAL: KILL (SIGKILL: the process dies at once) or TERM (SIGTERM: a checkpoint at the next safe point,
  then exit 143; under torchrun only rank 0 receives it, so the others must follow by agreement);
  POINT: none, sampling, reward, surrogate, checkpoint.
Used by test_kill_resume.py; nothing in lasro itself knows about it.
"""
import logging
import os
import signal
import sys

from lasro.generators import FewStepGenerator
from lasro.methods.lasro import LaSRO
from lasro.training import Trainer
from lasro.training import checkpointing as ckpt

from tests.conftest import tiny_train_config


def config(out):
    return tiny_train_config(out, "tiny:sdxl", algorithm={"rounds": 4}, logging={"checkpoints_total_limit": 2},
                             lasro={"pretrain_checkpoint_every": 1})


def signal_on_call(owner, name, nth, signum):
    original = getattr(owner, name)
    calls = [0]

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == nth:
            os.kill(os.getpid(), signum)
        return original(*args, **kwargs)

    setattr(owner, name, wrapped)


def main(sig, point, nth, out, resume=None):
    logging.basicConfig(level=logging.INFO)  # as the CLI: the run's messages go to stderr
    trainer = Trainer(config(out))
    targets = {"sampling": (FewStepGenerator, "sample"), "reward": (type(trainer.reward), "__call__"),
               "surrogate": (LaSRO, "surrogate_step"), "checkpoint": (ckpt, "_fsync_tree")}
    if point != "none" and trainer.acc.process_index == 0:
        signal_on_call(*targets[point], int(nth), getattr(signal, f"SIG{sig}"))
    from lasro.training import Preempted

    try:
        trainer.train(resume=resume)
    except Preempted as e:
        print(f"lasro: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main(*sys.argv[1:])

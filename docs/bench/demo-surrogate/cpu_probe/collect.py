"""CPU probe data: scored samples of the demo generator with pixels cached."""
import sys, time, torch
from lasro.config import load_config
from lasro.trainer import LaSROTrainer
out, rounds_train, rounds_held, ppr, spp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cfg = load_config("lasro/configs/demo.yaml", [f"exploration.prompts_per_round={ppr}", f"exploration.samples_per_prompt={spp}",
      "buffer.capacity=1000000", "logging.output_dir=/tmp/pp/run", "logging.tensorboard=false", "logging.progress=false"])
tr = LaSROTrainer(cfg)
sets = {}
for name, rounds in (("train", rounds_train), ("held", rounds_held)):
    tr.buffer.__init__(10**7, 0.9)
    t = time.time()
    for r in range(rounds):
        tr.collect(r)
    b = tr.buffer
    sets[name] = {"latents": b.latents.float(), "pixels": b.pixels, "prompts": list(b.prompts), "rewards": b.rewards,
                  "steps": b.steps}
    print(name, len(b), "samples", f"{time.time() - t:.1f}s", "mean reward", b.rewards.mean(), flush=True)
torch.save(sets, out)

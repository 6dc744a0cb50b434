"""The ``lasro`` command line: train, sample, rewards, bench."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

DESCRIPTION = """\
lasro fine-tunes few-step text-to-image diffusion models (SDXL-Turbo, LCM-SDXL,
LCM-SSD-1B, SD-Turbo) toward any reward, including non-differentiable ones, with
LaSRO: a surrogate reward learned in the generator's latent space, back-propagated
through the 1-2 sampling steps into LoRA weights. PPO, DPO, GORS and DRaFT run on
the same loop for comparison (algorithm.method).

Every command that takes a config takes it as the optional positional CONFIG
(default: the embedded demo job, lasro/configs/demo.yaml) plus --set KEY=VALUE.

examples:
  lasro train                                         # the demo job, offline on CPU
  lasro train configs/tiny-jpeg.yaml                  # a few CPU minutes, offline
  lasro train configs/sdxl-turbo-jpeg.yaml --set optim.lr=5e-5 --set logging.output_dir=runs/a
  lasro train configs/tiny-jpeg.yaml --set algorithm.method=ppo   # a baseline on the same loop
  lasro train CONFIG.yaml --resume latest             # continue an interrupted run
  lasro sample CONFIG.yaml --lora runs/a/lora --prompt "a red car" --out samples/
  lasro eval --lora runs/demo/lora --against-base     # paired gain of a LoRA on held-out prompts
  lasro rewards                                       # registered rewards
  lasro methods                                       # registered methods
  lasro serve-reward jpeg_compressibility --port 8000 # a reward over HTTP (reward: remote)
  lasro demo build                                    # rebuild the shipped demo model (about an hour)
  lasro bench step configs/tiny-jpeg.yaml             # cost of one LaSRO step (JSON)
  lasro bench memory configs/bench-sdxl-turbo-random.yaml --memory-gib 80   # largest batch that fits
  lasro bench overlap                                 # reward scoring inline vs overlapped with sampling
  lasro bench reward-load --clients 8                 # a reward server under concurrent clients
  lasro bench kill-resume configs/tiny-jpeg.yaml --kills 10   # SIGKILL anywhere, resume, compare weights
  lasro bench learnability --queries 1024             # can every method raise an easy reward?
  lasro bench compare configs/tiny-jpeg.yaml --methods lasro,ppo --seeds 0,1 --queries 400
  lasro report runs/demo                              # self-contained report.html of a run or compare folder

Outputs of a run (logging.output_dir): report.html, metrics.jsonl, tensorboard/, samples/*.png
(labelled grids, before_after_2step.png), reward_curve.png, final_eval.json, checkpoints/round-N/,
lora/pytorch_lora_weights.safetensors (loadable with diffusers' pipe.load_lora_weights).
"""


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()  # hides the torchvision fallback notice
    except Exception:  # noqa: BLE001
        pass


def _config(args):
    """CONFIG with --set overrides; ``--model`` (sample, eval) stands for ``--set model.pretrained=...``."""
    from lasro.methods import load_config

    model = getattr(args, "model", None)
    return load_config(args.config, args.set + ([f"model.pretrained={model}"] if model else []))


def comma_list(text: str | None) -> list[str] | None:
    """"a, b,c" -> ["a", "b", "c"] (empty items dropped); None for no text (the option was not given)."""
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def cmd_train(args) -> int:
    from lasro.training import Trainer

    cfg = _config(args)
    trainer = Trainer(cfg)
    rows = trainer.train(resume=args.resume)
    if trainer.is_main and rows:
        first, last = rows[0], rows[-1]
        summary = {k: last.get(k) for k in last if k.startswith("eval/") or k in ("round", "reward_queries")}
        summary["before"] = {k: first[k] for k in first if k.startswith("eval/reward")}
        summary["output_dir"] = cfg.logging.output_dir
        summary["wall_seconds"] = round(last["time/wall_seconds"], 1)
        final = os.path.join(cfg.logging.output_dir, "final_eval.json")
        if cfg.prompts.final_eval and os.path.exists(final):
            with open(final) as f:
                summary["final_eval"] = json.load(f)
        print(json.dumps(summary))
    return 0


def _generator(args, cfg):
    """``cfg``'s model on --device (default: CUDA when present), with --lora applied if given."""
    from lasro.generators import FewStepGenerator, default_device

    gen = FewStepGenerator.from_config(cfg.model)
    gen.to(args.device or default_device())
    if args.lora:
        if not os.path.exists(args.lora):
            raise FileNotFoundError(f"--lora {args.lora!r} not found (a folder with pytorch_lora_weights.safetensors)")
        gen.pipe.load_lora_weights(args.lora)
    return gen


def cmd_sample(args) -> int:
    import torch

    from lasro.evaluation import fixed_noises
    from lasro.prompts import resolve_prompts

    gen = _generator(args, _config(args))
    prompts = list(args.prompt or [])
    if args.prompts_file:
        prompts += resolve_prompts(args.prompts_file, "--prompts-file")
    if not prompts:
        raise ValueError("give at least one --prompt or a --prompts-file")
    os.makedirs(args.out, exist_ok=True)
    steps = gen.timesteps[: args.steps]
    written = []
    for i, prompt in enumerate(prompts):
        for j in range(args.num_per_prompt):
            noise, eps = fixed_noises(gen, 1, args.seed + j)
            with torch.no_grad():
                x = gen.sample(gen.unet, noise, gen.encode_prompts([prompt]), timesteps=steps, renoise=[eps])[-1]
            path = os.path.join(args.out, f"{i:03d}_{j:02d}.png")
            gen.decode(x)[0].save(path)
            written.append(path)
    print(json.dumps({"images": written, "steps": len(steps)}))
    return 0


def cmd_eval(args) -> int:
    from lasro.evaluation import mean_metrics, paired_evaluation, score_samples
    from lasro.prompts import resolve_prompts
    from lasro.rewards import build_judges, build_reward

    if args.against_base and not args.lora:
        raise ValueError("--against-base compares --lora with the model without it: give --lora too")
    cfg = _config(args)
    gen = _generator(args, cfg)
    prompt_set = args.prompts or cfg.prompts.final_eval or cfg.prompts.eval
    prompts = [p for p in resolve_prompts(prompt_set, "--prompts") for _ in range(args.seeds)]
    reward_spec = args.reward or cfg.reward
    reward, judges = build_reward(reward_spec), build_judges(list(cfg.eval_rewards) + (args.judge or []))
    if not getattr(reward.fn, "evaluates", True):
        raise ValueError(f"reward {reward.name!r} cannot score evaluation samples (it asks people about training "
                         "pairs); name one that can with --reward NAME")
    row = {"model": cfg.model.pretrained, "lora": args.lora, "reward": reward_spec, "prompts": prompt_set,
           "samples": len(prompts), "seed": args.seed}
    if args.against_base:
        # the same noises with the LoRA off: per-sample differences, bootstrapped over prompts
        paired = paired_evaluation(gen, reward, prompts, seed=args.seed, steps=args.steps, judges=judges)
        row.update({**paired["tuned"], "base": paired["initial"], "gain": paired["gain"]})
    else:
        scores, _ = score_samples(gen, reward, prompts, seed=args.seed, steps=args.steps, judges=judges)
        row.update(mean_metrics(scores))
    print(json.dumps(row))
    return 0


def cmd_demo_build(args) -> int:
    from lasro.demo.build import BuildSpec, build
    from lasro.generators.loading import PACKAGED_MODEL

    spec = BuildSpec(seed=args.seed, scale=args.scale)
    build(args.out or PACKAGED_MODEL, args.work, spec)
    return 0


def cmd_demo_build_judge(args) -> int:
    from lasro.demo.judge_build import JudgeSpec, build_judge
    from lasro.rewards.shapes_judge import SHIPPED

    command = "lasro demo build-judge" + (f" --out {args.out}" if args.out else "") + (
        f" --seed {args.seed}" if args.seed else "") + (f" --scale {args.scale}" if args.scale != 1.0 else "")
    build = build_judge(args.out or SHIPPED, JudgeSpec(seed=args.seed), scale=args.scale, command=command)
    print(json.dumps({k: build[k] for k in ("parameters", "train", "held_out", "wall_seconds")}))
    return 0


def cmd_serve_reward(args) -> int:
    from lasro.rewards.remote import make_server

    spec = {"name": args.name, "kwargs": json.loads(args.kwargs)} if args.kwargs else args.name
    server = make_server(spec, args.host, args.port, token=args.token, max_batch=args.max_batch,
                         max_request_bytes=int(args.max_request_mb * 2**20), insecure_no_token=args.insecure_no_token)
    host, port = server.server_address[:2]
    auth = "bearer token required" if server.requires_token else "no token"
    print(f"serving reward {args.name!r} on http://{host}:{port}/ (POST JSON; {auth}; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_label(args) -> int:
    from lasro.labeling.votes import VoteStore

    if args.action == "serve":
        from lasro.labeling.app import LOOPBACK_NAMES, LabelServer

        server = LabelServer(args.folder, host=args.host, port=args.port)
        if args.host not in LOOPBACK_NAMES:
            print(f"lasro: warning: the label app listens on {args.host}: anyone who can reach port {args.port} "
                  "can see the images and vote (there is no login); keep it on a trusted network", file=sys.stderr)
        server.start()
        voted, total = server.app.state.store.progress()
        print(f"label app for {args.folder} on {server.url} ({voted} of {total} pairs voted; Ctrl-C stops, "
              "every vote is already on disk)", flush=True)
        try:
            while server.thread.is_alive():
                server.thread.join(timeout=1.0)
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
        return 0
    with VoteStore(args.folder) as store:
        if args.action == "export":
            n = store.export_jsonl(args.file)
            print(f"wrote {n} votes to {args.file} (skips and unvoted pairs left out)")
        else:
            n = store.import_jsonl(args.file, source_folder=args.images_from)
            print(f"imported {n} voted pairs into {args.folder}")
    return 0


def cmd_rewards(args) -> int:
    from lasro.rewards import list_rewards

    for name, desc, needs_weights in list_rewards():
        print(f"{name:28s} {'[weights]' if needs_weights else '         '} {desc}")
    return 0


def cmd_methods(args) -> int:
    from lasro.methods import list_methods, method_class

    for name in list_methods():
        doc = (method_class(name).__doc__ or "").strip().splitlines()
        print(f"{name:10s} {doc[0] if doc else ''}")
    return 0


def cmd_bench_step(args) -> int:
    from lasro.bench.step import bench_step

    if args.batch:
        args.set = [*args.set, f"optim.batch_size={args.batch}"]
    print(json.dumps(bench_step(_config(args), repeats=args.repeats, warmup=args.warmup)))
    return 0


def batch_pair(text: str) -> tuple[int, int]:
    """``--probe-batches``: two comma-separated positive batch sizes."""
    try:
        b = tuple(int(x) for x in text.split(","))
    except ValueError:
        b = ()
    if len(b) != 2 or min(b) < 1:
        raise argparse.ArgumentTypeError(f"expected two positive batch sizes like 1,2, got {text!r}")
    return b


def cmd_bench_memory(args) -> int:
    from lasro.bench.memory import bench_memory

    print(json.dumps(bench_memory(_config(args), args.memory_gib, args.probe_batches, args.target_batch)))
    return 0


def cmd_bench_overlap(args) -> int:
    from lasro.bench.overlap import bench_overlap

    print(json.dumps(bench_overlap(_config(args), repeats=args.repeats, warmup=args.warmup)))
    return 0


def cmd_bench_reward_load(args) -> int:
    from lasro.bench.reward_load import bench_reward_load

    result = bench_reward_load(clients=args.clients, requests=args.requests, batch=args.batch, reward=args.reward,
                               size=args.size, url=args.url)
    print(json.dumps(result))
    return 0 if result["failed"] == 0 else 1


def cmd_bench_kill_resume(args) -> int:
    from lasro.bench.kill_resume import bench_kill_resume

    overrides = [x for kv in args.set for x in ("--set", kv)]
    result = bench_kill_resume(args.config, overrides, args.kills, args.out, seed=args.seed)
    for row in result["kills"]:
        print(json.dumps(row))
    print(json.dumps({k: v for k, v in result.items() if k != "kills"}))
    return 0 if result["all_equal"] else 1


def cmd_bench_learnability(args) -> int:
    from lasro.bench.learnability import learnability, markdown

    methods = comma_list(args.methods)
    rows = learnability(args.config, [r.strip() for r in args.rewards.split(",")], methods, args.queries,
                        [int(x) for x in args.seeds.split(",")], args.out, args.set)
    table = markdown(rows)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "learnability.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.out, "learnability.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(table)
    return 0 if all(r.get("learns", True) for r in rows) else 1


def cmd_bench_human(args) -> int:
    from lasro.bench.human import bench_human, markdown

    rows = bench_human(args.config, args.rule, args.votes, [int(x) for x in args.seeds.split(",")], args.out, args.set)
    print(markdown(rows), end="")
    return 0


def add_jobs(parser) -> None:
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained at once, each in its own process with cores / jobs CPU threads, all on "
                             "the config's device (default 1; on a GPU, many demo-sized runs fit at once)")


def cmd_bench_tune(args) -> int:
    from lasro.bench.tune import tune

    result = tune(args.config, args.grid, args.out, args.set, jobs=args.jobs)
    with open(os.path.join(args.out, "tuning.md")) as f:
        print(f.read())
    print(f"chosen settings: {os.path.join(args.out, 'tuned.yaml')}")
    return 0 if result["tuned"] else 1


def cmd_bench_compare(args) -> int:
    from lasro.bench.compare import compare, markdown

    labels = comma_list(args.methods)
    seeds = [int(s) for s in comma_list(args.seeds) or []]
    table = None
    if args.tuned:
        from lasro.bench.tune import read_tuned

        table = read_tuned(args.tuned)
    results = compare(args.config, labels, seeds, args.queries, args.out, preset=args.preset, overrides=args.set,
                      eval_every_queries=args.eval_every_queries, final_eval=not args.no_final_eval, table=table,
                      jobs=args.jobs)
    print(markdown(results))
    print(json.dumps({"results": os.path.join(args.out, "results.json"), "table": os.path.join(args.out, "results.md"),
                      "curves": [os.path.join(args.out, n) for n in ("curves_queries.png", "curves_wall.png")]}))
    return 0


def cmd_bench_suite(args) -> int:
    from lasro.bench.suite import markdown, suite

    seeds = [int(s) for s in comma_list(args.seeds)] if args.seeds else None
    results = suite(args.config, args.suite, comma_list(args.tasks), comma_list(args.methods), seeds, args.queries,
                    args.out, args.set, jobs=args.jobs, report_only=args.report_only)
    print(markdown(results))
    print(json.dumps({"results": os.path.join(args.out, "results.json"), "table": os.path.join(args.out, "suite.md"),
                      "tasks": [os.path.join(args.out, t) for t in results["tasks"]]}))
    return 0


def cmd_report(args) -> int:
    from lasro.report import write_report

    print(write_report(args.run_dir, out=args.out, config_path=args.config))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lasro", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def with_config(sp):
        """The one way every command takes a config: optional positional CONFIG, then --set overrides."""
        sp.add_argument("config", nargs="?", metavar="CONFIG",
                        help="YAML config (see configs/); omitted: the embedded demo job (lasro/configs/demo.yaml)")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set optim.lr=3e-5 (repeatable)")

    def with_model(sp):
        """A model to sample from: CONFIG's model section, --model to override it, a LoRA, a device."""
        with_config(sp)
        sp.add_argument("--model", help="hub id, local folder or demo:shapes (default: CONFIG's model.pretrained)")
        sp.add_argument("--lora", help="folder with pytorch_lora_weights.safetensors (e.g. RUN/lora)")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--device", help="default: CUDA when present, else the CPU")

    def with_timing(sp):
        sp.add_argument("--repeats", type=int, default=3)
        sp.add_argument("--warmup", type=int, default=1)

    t = sub.add_parser("train", help="fine-tune a generator (LaSRO or a baseline: algorithm.method)",
                       description="Fine-tune a few-step generator toward the configured reward.")
    with_config(t)
    t.add_argument("--resume", metavar="latest|PATH", help="continue from the latest (or a given) checkpoint")
    t.set_defaults(fn=cmd_train)

    s = sub.add_parser("sample", help="generate PNGs from a model (+ LoRA)",
                       description="Generate images with the same 1-2 step sampler that training uses.")
    with_model(s)
    s.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    s.add_argument("--prompts-file", help="text file, one prompt per line")
    s.add_argument("--steps", type=int, default=2, choices=[1, 2])
    s.add_argument("--num-per-prompt", type=int, default=1)
    s.add_argument("--out", default="samples")
    s.set_defaults(fn=cmd_sample)

    e = sub.add_parser("eval", help="held-out mean reward (and exact-match) of a model at 1 and 2 steps",
                       description="Sample fixed-seed 1- and 2-step images for a prompt set, score them, "
                                   "print one JSON line.")
    with_model(e)
    e.add_argument("--reward", help="registered reward name or module:Class (default: CONFIG's reward)")
    e.add_argument("--judge", action="append", metavar="REWARD",
                   help="another reward scored on the same samples, reported as REWARD/reward_Kstep_mean "
                        "(repeatable; CONFIG's eval_rewards are scored too)")
    e.add_argument("--prompts",
                   help="prompt file, or shapes:train / shapes:test / shapes:test:N (N distinct test prompts, "
                        "balanced over object counts); default: CONFIG's prompts.final_eval, else prompts.eval")
    e.add_argument("--seeds", type=int, default=1, help="samples per prompt")
    e.add_argument("--steps", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    e.add_argument("--against-base", action="store_true",
                   help="also score the model without --lora on the same noises and report the per-sample gain "
                        "(mean and 95%% bootstrap interval over prompts) as \"base\" and \"gain\"")
    e.set_defaults(fn=cmd_eval)

    r = sub.add_parser("rewards", help="list registered rewards")
    r.set_defaults(fn=cmd_rewards)
    m = sub.add_parser("methods", help="list registered fine-tuning methods")
    m.set_defaults(fn=cmd_methods)

    sr = sub.add_parser("serve-reward", help="serve a registered reward over HTTP (for the 'remote' reward)",
                        description="Serve any registered reward (or module:attr) over HTTP, JSON + base64 PNG. "
                                    "Clients: reward: {name: remote, kwargs: {url: http://HOST:PORT/}}.")
    sr.add_argument("name", help="registered reward name or package.module:attr")
    sr.add_argument("--kwargs", help="JSON object of keyword arguments for the reward")
    sr.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    sr.add_argument("--port", type=int, default=8000)
    sr.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on every POST (default: "
                                    "$LASRO_REWARD_TOKEN, which ps does not show); needed off loopback")
    sr.add_argument("--insecure-no-token", action="store_true",
                    help="DANGEROUS: serve off loopback without a token, so anyone who reaches the port can "
                         "run the reward on your hardware")
    sr.add_argument("--max-request-mb", type=float, default=64, help="refuse larger bodies with 413 (default 64)")
    sr.add_argument("--max-batch", type=int, default=256, help="refuse more images per request with 413 "
                                                               "(default 256)")
    sr.set_defaults(fn=cmd_serve_reward)

    d = sub.add_parser("demo", help="the shapes demo model: demo build, demo build-judge").add_subparsers(dest="demo", metavar="ACTION")
    db = d.add_parser("build", help="regenerate the shipped shapes demo model from scratch (about an hour on CPU)")
    db.add_argument("--out", help="output folder (default: the package's own demo model folder)")
    db.add_argument("--work", default="demo-build-work", help="stage cache; a rerun resumes from it")
    db.add_argument("--seed", type=int, default=0)
    db.add_argument("--scale", type=float, default=1.0, help="multiply every step/sample count (0.01: smoke test)")
    db.set_defaults(fn=cmd_demo_build)
    dj = d.add_parser("build-judge", help="train the shapes_judge reward (a small CNN) on data the demo generates",
                      description="Generate the demo model's samples and rendered scenes, score them with the mean of "
                                  "shapes_detector and shapes_fidelity, fit the judge CNN, and write "
                                  "judge.safetensors and BUILD.json (held-out Pearson r, pair accuracy) to --out.")
    dj.add_argument("--out", help="folder (default: the shipped lasro/demo/shapes_judge)")
    dj.add_argument("--seed", type=int, default=0)
    dj.add_argument("--scale", type=float, default=1.0, help="multiply the sample and step counts (0.02: smoke test)")
    dj.set_defaults(fn=cmd_demo_build_judge)

    b = sub.add_parser("bench", help="benchmarks: step, memory, overlap, reward-load, kill-resume, learnability, tune, compare, "
                                          "suite, human")
    b = b.add_subparsers(dest="bench", metavar="BENCH")
    bs = b.add_parser("step", help="seconds of one LaSRO generator step vs a bare 2-step LoRA fwd+bwd",
                      description="Time LaSRO generator steps as training takes them, in whole rounds of "
                                  "algorithm.generator_steps covering at least --repeats steps (a round's first step "
                                  "needs no round-start reference pass), and --repeats bare 2-step LoRA "
                                  "forward+backward passes on the same batch; print one JSON line with the mean LaSRO "
                                  "step, its first and later steps, the bare step's median, their ratio and the peak "
                                  "memory.")
    with_config(bs)
    with_timing(bs)
    bs.add_argument("--batch", type=int, help="samples per step (stands for --set optim.batch_size=N)")
    bs.set_defaults(fn=cmd_bench_step)
    bm = b.add_parser("memory", help="the largest batch a LaSRO generator step fits in --memory-gib (estimate)",
                      description="Measure the peak memory of whole LaSRO generator steps at two small batches "
                                  "(CUDA's peak allocation, or the process's peak resident set on CPU), fit it as "
                                  "fixed + per-sample, and solve for the largest batch under --memory-gib. Prints "
                                  "one JSON line with the weights and saved activations as a breakdown.")
    with_config(bm)
    bm.add_argument("--memory-gib", type=float, default=80.0, help="device memory to fit (GiB; default 80)")
    bm.add_argument("--probe-batches", type=batch_pair, default=(1, 2), help="two batch sizes to measure (default 1,2)")
    bm.add_argument("--target-batch", type=int, default=8, help="also report the estimated peak at this batch")
    bm.set_defaults(fn=cmd_bench_memory)
    bo = b.add_parser("overlap", help="seconds of one collection round, reward scored inline vs overlapped "
                                      "with sampling")
    with_config(bo)
    with_timing(bo)
    bo.set_defaults(fn=cmd_bench_overlap)
    brl = b.add_parser("reward-load", help="throughput and p99 latency of serve-reward under N concurrent clients",
                       description="Serve --reward on loopback in this process (or use --url), send --requests "
                                   "requests of --batch images from --clients threads through the remote reward "
                                   "client (one try each), print one JSON line; exit 1 if any request failed.")
    brl.add_argument("--clients", type=int, default=8)
    brl.add_argument("--requests", type=int, default=400, help="requests in all, split over the clients")
    brl.add_argument("--batch", type=int, default=8, help="images per request")
    brl.add_argument("--reward", default="jpeg_compressibility",
                     help="reward to serve, and to check every answer against locally")
    brl.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    brl.add_argument("--url", help="load an already running server instead (it must serve --reward; token: "
                                   "$LASRO_REWARD_TOKEN)")
    brl.set_defaults(fn=cmd_bench_reward_load)
    bk = b.add_parser("kill-resume", help="SIGKILL a run at random moments, resume each with --resume latest, "
                                          "compare the final LoRAs with an uninterrupted run's")
    with_config(bk)
    bk.add_argument("--kills", type=int, default=10)
    bk.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    bk.add_argument("--out", default="runs/kill-resume")
    bk.set_defaults(fn=cmd_bench_kill_resume)
    bl = b.add_parser("learnability", help="does each method raise an easy reward (saturation, JPEG size) "
                                           "beyond its 95%% interval at a small query budget?")
    with_config(bl)
    bl.add_argument("--rewards", default="saturation,jpeg_compressibility")
    bl.add_argument("--methods", help="comma-separated (default: every registered method)")
    bl.add_argument("--queries", type=int, default=1024)
    bl.add_argument("--seeds", default="0")
    bl.add_argument("--out", default="runs/learnability")
    bl.set_defaults(fn=cmd_bench_learnability)
    bh = b.add_parser("human", help="a simulated labeller votes in the label app by a rule only it knows; does "
                                    "reward: human move the generator toward that rule within the vote budget?")
    with_config(bh)
    bh.add_argument("--rule", default="saturation", help="the simulated person's taste: a registered reward")
    bh.add_argument("--votes", type=int, default=512, help="vote budget per seed (2 images, 2 queries, a vote)")
    bh.add_argument("--seeds", default="0")
    bh.add_argument("--out", default="runs/bench-human")
    bh.set_defaults(fn=cmd_bench_human)
    bt = b.add_parser("tune", help="the same small tuning grid for every method on a tuning reward; writes tuned.yaml",
                      description="Train each method at each setting of the grid (default "
                                  "lasro/configs/bench_tuning.yaml: 3 learning rates x 2 values of each method's "
                                  "main coefficient, on jpeg_incompressibility) from CONFIG, keep the setting with "
                                  "the highest paired 2-step gain, and write tuning.md and tuned.yaml (a methods: "
                                  "table for `bench compare --tuned`) under --out. Resumable: rerun to finish.")
    with_config(bt)
    bt.add_argument("--grid", help="grid YAML (default: lasro/configs/bench_tuning.yaml)")
    add_jobs(bt)
    bt.add_argument("--out", default="runs/tune")
    bt.set_defaults(fn=cmd_bench_tune)
    bc = b.add_parser("compare", help="methods x seeds at an equal budget of true-reward queries",
                      description="Train each method (or variant) with each seed from the same CONFIG until it "
                                  "reaches the query budget; write results.json, results.md (mean ± std over seeds) "
                                  "and curves_queries.png / curves_wall.png under --out. Variants: registered "
                                  "methods, or labels under a `methods:` mapping in CONFIG (label -> config "
                                  "overrides) or in a --preset.")
    with_config(bc)
    bc.add_argument("--methods", help="comma-separated methods/variants (default: the `methods:` labels, else "
                                      "every registered method, LaSRO first); the first is the reference, the rest "
                                      "baselines")
    bc.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    bc.add_argument("--queries", type=int, help="true-reward query budget per run (default: "
                                                "algorithm.max_reward_queries of CONFIG)")
    bc.add_argument("--eval-every-queries", type=int, help="held-out evaluation interval (default: budget / 5)")
    bc.add_argument("--no-final-eval", action="store_true",
                    help="skip each run's paired final evaluation on prompts.final_eval (default: run it when the "
                         "config names one)")
    bc.add_argument("--preset", choices=["ablations", "ablations_config", "tuned", "tuned_unguarded"],
                    help="ablations: the paper's, with its latent surrogate (lasro/configs/bench_ablations.yaml); "
                         "ablations_config: the same switches on CONFIG as it stands (bench_ablations_config.yaml); "
                         "tuned: each method's equally tuned settings (bench_tuned.yaml, from `lasro bench tune` under the "
                         "judge guard); tuned_unguarded: the earlier tuning without the guard (bench_tuned_unguarded.yaml)")
    bc.add_argument("--tuned", help="a methods: table of settings, e.g. the tuned.yaml that `lasro bench tune` "
                                    "writes (its labels are variants, like a preset's)")
    add_jobs(bc)
    bc.add_argument("--out", default="runs/compare")
    bc.set_defaults(fn=cmd_bench_compare)
    bsu = b.add_parser("suite", help="methods x tasks x seeds: every task's comparison and one table",
                      description="Run `bench compare` for each task of the suite file (a black-box reward and its "
                                  "held-out judges) at its equal query budget, under --out/TASK, and write "
                                  "results.json and suite.md (every task's paired gains, judges, queries for "
                                  "LaSRO to reach the best baseline and the ratio, wall) under --out. Resumable: "
                                  "rerun the same command to finish a killed suite.")
    with_config(bsu)
    bsu.add_argument("--suite", help="suite YAML (default: lasro/configs/bench_suite.yaml: detector, fidelity, spatial, "
                                    "compressibility, learned_judge)")
    bsu.add_argument("--tasks", help="comma-separated tasks of the suite (default: all)")
    bsu.add_argument("--methods", help="comma-separated methods/variants (default: the suite file's)")
    bsu.add_argument("--seeds", help="comma-separated seeds (default: the suite file's)")
    bsu.add_argument("--queries", type=int, help="true-reward queries per run (default: the suite file's)")
    add_jobs(bsu)
    bsu.add_argument("--report-only", action="store_true",
                     help="train nothing: write the tables and pages from the runs --out already holds (a suite "
                          "still running, or one finished elsewhere)")
    bsu.add_argument("--out", default="runs/suite")
    bsu.set_defaults(fn=cmd_bench_suite)

    lb = sub.add_parser("label", help="people as the reward: the pairwise labelling app, vote export and import",
                        description="serve: a local web app showing two images of one prompt from FOLDER's queue "
                                    "(left / right / tie / skip, keys, undo), each vote saved to FOLDER/votes.sqlite "
                                    "at once. export / import: votes as JSON lines (pair_id, caption, image_0, "
                                    "image_1, label_0, label_1), close to Pick-a-Pic's pairwise format.")
    lba = lb.add_subparsers(dest="action", metavar="ACTION", required=True)
    lbs = lba.add_parser("serve", help="serve the labelling app over FOLDER")
    lbs.add_argument("folder", metavar="FOLDER", help="a label folder (the human reward's dir: votes.sqlite, images/)")
    lbs.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    lbs.add_argument("--port", type=int, default=8765)
    lbs.set_defaults(fn=cmd_label)
    lbe = lba.add_parser("export", help="write FOLDER's votes as JSON lines")
    lbe.add_argument("folder", metavar="FOLDER")
    lbe.add_argument("file", metavar="FILE.jsonl")
    lbe.set_defaults(fn=cmd_label)
    lbi = lba.add_parser("import", help="add the voted pairs of a JSON-lines export to FOLDER")
    lbi.add_argument("folder", metavar="FOLDER")
    lbi.add_argument("file", metavar="FILE.jsonl")
    lbi.add_argument("--images-from", metavar="DIR", help="where the export's image paths start (default: the "
                                                         "file's folder)")
    lbi.set_defaults(fn=cmd_label)

    rp = sub.add_parser("report", help="write a self-contained report.html of a run (or a bench compare folder)",
                        description="Render RUN_DIR's config, environment, final paired evaluation, curves, "
                                    "reward-hacking monitor and sample pictures (a bench compare folder: its table "
                                    "and curves) into one HTML file with everything embedded; print its path. "
                                    "lasro train writes it at the end of every run.")
    rp.add_argument("run_dir", metavar="RUN_DIR", help="a run's logging.output_dir, or a bench compare --out folder")
    rp.add_argument("--out", metavar="FILE", help="where to write (default: RUN_DIR/report.html)")
    rp.add_argument("--config", metavar="YAML", help="show this config instead of the newest checkpoint's")
    rp.set_defaults(fn=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    from lasro.config import ConfigError
    from lasro.generators import ModelLoadError
    from lasro.malloc_tuning import keep_freed_memory
    from lasro.rewards import RewardError
    from lasro.training import NonFiniteError, Preempted
    from lasro.training.checkpointing import CheckpointError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    _setup_logging()
    keep_freed_memory()
    try:
        return args.fn(args)
    except Preempted as e:
        print(f"lasro: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("lasro: aborted (Ctrl-C twice): nothing written since the last checkpoint", file=sys.stderr)
        return 130
    except (ConfigError, ModelLoadError, RewardError, CheckpointError, NonFiniteError, FileNotFoundError,
            ValueError) as e:
        print(f"lasro: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

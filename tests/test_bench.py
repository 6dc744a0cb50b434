from lasro.bench.step import bench_step

from .conftest import tiny_train_config


def test_bench_step_reports_both_timings_and_their_ratio(tmp_path):
    cfg = tiny_train_config(tmp_path / "unused", "tiny:sdxl")
    result = bench_step(cfg, repeats=1, warmup=0)
    assert result["lasro_step_s"] > 0 and result["bare_2step_lora_fwd_bwd_s"] > 0
    assert abs(result["ratio"] - result["lasro_step_s"] / result["bare_2step_lora_fwd_bwd_s"]) < 0.01
    assert result["batch"] == cfg.optim.batch_size and result["steps"] == 2 and result["peak_memory_mib"] > 0
    assert cfg.logging.output_dir == str(tmp_path / "unused")  # the caller's config is left as it was


def test_bench_overlap_times_both_ways_and_leaves_the_config_alone(tmp_path, capsys):
    from lasro.bench.overlap import bench_overlap

    cfg = tiny_train_config(tmp_path / "unused", "tiny:sdxl", exploration={"prompts_per_round": 4,
                                                                           "samples_per_prompt": 4})
    result = bench_overlap(cfg, repeats=1, warmup=0)
    assert result["inline_s"] > 0 and result["overlapped_s"] > 0
    assert abs(result["speedup"] - result["inline_s"] / result["overlapped_s"]) < 0.01
    assert result["samples_per_round"] == 32 and result["chunk"] < 16
    assert cfg.exploration.overlap_scoring is True


def test_bench_step_batch_flag_sets_the_batch(capsys):
    import json

    from lasro.cli import main

    assert main(["bench", "step", "configs/tiny-jpeg.yaml", "--batch", "3", "--repeats", "1", "--warmup", "0",
                 "--set", "lasro.regularizer=lora_l2"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["batch"] == 3 and result["regularizer"] == "lora_l2"


def test_bench_memory_grows_with_the_batch_and_solves_for_the_budget(capsys):
    import json

    from lasro.cli import main

    assert main(["bench", "memory", "configs/tiny-jpeg.yaml", "--memory-gib", "4", "--probe-batches", "1,8",
                 "--target-batch", "16"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved, peak = r["saved_activations_mib"], r["peak_mib"]
    assert 0 < saved["1"] < saved["8"] and r["weights_mib"] > 0 and peak["1"] > r["weights_mib"]
    # the line through the two probes (its parameters rounded to 0.001 MiB)
    line = lambda b: r["fixed_mib"] + r["per_sample_mib"] * b  # noqa: E731
    assert abs(line(1) - peak["1"]) < 1 and abs(line(8) - peak["8"]) < 1
    assert abs(r["estimated_peak_gib_batch_16"] - line(16) / 1024) < 0.01
    assert r["largest_batch"] is None or r["largest_batch"] >= 0


def test_fit_peaks_solves_the_largest_batch_under_the_budget():
    from lasro.bench.memory import fit_peaks

    fixed, per_sample, largest = fit_peaks({2: 14.0, 1: 10.0}, budget=40.0)
    assert (fixed, per_sample, largest) == (6.0, 4.0, 8)  # 6 + 4 x 8 = 38 <= 40 < 42
    assert fit_peaks({1: 10.0, 2: 30.0}, budget=5.0)[2] == 0  # not even one sample fits
    assert fit_peaks({1: 10.0, 4: 10.0}, budget=40.0)[2] is None  # a peak that does not grow says nothing


def test_bench_memory_needs_two_probe_batches(capsys):
    from lasro.cli import main

    import pytest

    assert main(["bench", "memory", "configs/tiny-jpeg.yaml", "--probe-batches", "2,2"]) != 0
    assert "two different probe batch sizes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "memory", "--probe-batches", "1,x"])
    assert "expected two positive batch sizes like 1,2, got '1,x'" in capsys.readouterr().err


def test_bench_step_times_whole_rounds_of_reused_inputs(tmp_path):
    cfg = tiny_train_config(tmp_path / "unused", "tiny:sdxl", lasro={"round_inputs": "reused"},
                            algorithm={"generator_steps": 2})
    result = bench_step(cfg, repeats=1, warmup=0)
    assert result["round_inputs"] == "reused" and result["repeats"] == 2  # one whole round of 2 steps
    assert result["first_step_s"] > 0 and result["later_steps_s"] > 0

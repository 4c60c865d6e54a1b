"""`denoisekit distill`: stages as run folders whose students teach the next, the student's record (stage, NFE, teacher)
and default sampling, bitwise resume of a stage stopped mid-way, a saved student's bits, CFG folded into a student,
and the one-line refusals of bad input before any work."""
import shutil

import pytest
import torch

from denoisekit.cli import main

TEACHER = """data: moons
net: {hidden: 32, depth: 2}
prediction: eps
train: {steps: 30, batch_size: 64, progress: false, tensorboard: false, checkpoint_every: 30, log_every: 10}
sample: {steps: 4, n: 8}
"""


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A small eps-prediction diffusion run on moons."""
    root = tmp_path_factory.mktemp("teacher")
    cfg = root / "t.yaml"
    cfg.write_text(TEACHER)
    assert main(["train", "--config", str(cfg), "--out", str(root / "run")]) == 0
    return root / "run"


def distill_args(teacher, out, *extra):
    return ["distill", "--teacher", str(teacher), "--out", str(out), "--set", "train.progress=false",
            "--set", "train.tensorboard=false", "--set", "train.checkpoint_every=10", "--set", "sample.n=32", *extra]


def test_progressive_stages_record_and_sample_the_student(teacher, tmp_path, capsys):
    """Stages 2 -> 1 from a 4-step teacher: each a run folder; the eps teacher's student predicts v; info shows the
    stage, the student's NFE and the teacher; `sample OUT` takes the last stage with ddim, trailing, its N steps; a
    stage's teacher is the previous stage's student."""
    import json

    from denoisekit.models import load_model
    from denoisekit.recipes.distill import weights_digest
    from denoisekit.train import find_checkpoint
    out = tmp_path / "pd"
    assert main(distill_args(teacher, out, "--stages", "2,1", "--steps-per-stage", "20")) == 0
    stages = sorted((out / "stages").iterdir())
    assert [p.name for p in stages] == ["01-2-steps", "02-1-steps"]
    assert find_checkpoint(out) == find_checkpoint(stages[1])
    student = load_model(out)
    assert student.denoiser.prediction == "v" and not student.denoiser.consistency
    d = student.record["distill"]
    assert (d["method"], d["stage"], d["stages"], d["student_steps"]) == ("progressive", 2, 2, 1)
    assert d["sampling"] == {"sampler": "ddim", "steps": 1, "schedule": "trailing", "options": {}}
    assert d["teacher"]["weights"] == weights_digest(find_checkpoint(stages[0]))
    assert d["origin"]["weights"] == weights_digest(find_checkpoint(teacher))
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["distillation"]["student_steps"] == 1 and info["distillation"]["stage"] == 2
    assert main(["sample", str(out), "--n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert "sampler ddim: 1 network evaluations" in capsys.readouterr().out
    assert (stages[0] / "samples" / "step-0000020.png").exists()
    # again: every stage is done, nothing is retrained
    assert main(distill_args(teacher, out, "--stages", "2,1", "--steps-per-stage", "20")) == 0
    assert capsys.readouterr().out.count(": done") == 2


def test_a_stage_stopped_mid_way_resumes_bitwise_and_the_student_reloads_to_the_same_bits(teacher, tmp_path,
                                                                                          monkeypatch):
    """Stopped at step 10 of stage 1 of 2 (its later checkpoints and stage 2 gone, as after a kill), the same command
    ends with every stage's weights equal to an uninterrupted run's; samples drawn from the trained EMA student in
    memory equal those of the student reloaded from disk."""
    import denoisekit.recipes.distill as distill_module
    from denoisekit.samplers import generate
    from denoisekit.train import find_checkpoint, load_weights
    drawn = []

    def recording(model, n, shape, **kw):
        x = generate(model, n, shape, **kw)
        drawn.append((x, n, shape, kw))
        return x
    monkeypatch.setattr(distill_module, "generate", recording)
    out = tmp_path / "pd"
    args = distill_args(teacher, out, "--stages", "2,1", "--steps-per-stage", "20")
    assert main(args) == 0
    again = tmp_path / "again"
    shutil.copytree(out, again)
    shutil.rmtree(again / "stages" / "02-1-steps")
    shutil.rmtree(again / "stages" / "01-2-steps" / "checkpoints" / "step-0000020")
    (again / "stages" / "01-2-steps" / "checkpoints" / "latest").write_text("step-0000010")
    assert main(distill_args(teacher, again, "--stages", "2,1", "--steps-per-stage", "20")) == 0
    for stage in ("01-2-steps", "02-1-steps"):
        for ema in (False, True):
            a = load_weights(find_checkpoint(out / "stages" / stage), ema=ema)
            b = load_weights(find_checkpoint(again / "stages" / stage), ema=ema)
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (stage, ema)
    from denoisekit.models import load_model
    x, n, shape, kw = drawn[1]  # the last stage's picture, from its EMA model in memory
    assert torch.equal(generate(load_model(out).denoiser, n, shape, **kw), x)


def test_consistency_distillation_from_the_command_line(teacher, tmp_path, capsys):
    """One stage; the student is a consistency model (f(x, s_min) = x), copied from the teacher, that samples with
    the consistency sampler by default; its loss records the distance asked."""
    from denoisekit.models import load_model
    out = tmp_path / "cd"
    assert main(distill_args(teacher, out, "--method", "consistency", "--steps-per-stage", "10",
                             "--distance", "l2")) == 0
    student = load_model(out)
    assert student.denoiser.consistency and student.record["loss"]["distance"] == "l2"
    assert student.record["distill"]["method"] == "consistency"
    x = torch.randn(16, 2)
    t = torch.full((16,), student.process.t_eps, dtype=torch.float64)
    assert torch.allclose(student.denoiser(x, t).x0, x / student.process.alpha(t)[:, None].float(), atol=1e-6)
    capsys.readouterr()
    assert main(["sample", str(out), "--n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert "sampler consistency: 2 network evaluations" in capsys.readouterr().out


def test_guidance_is_folded_into_a_class_conditional_student(tmp_path):
    """A class-conditional teacher trained with label dropout: the student learns the guided teacher's two steps (the
    loss's teacher is the CFG wrapper at w), is conditional, and has no unconditional branch left to guide."""
    from denoisekit.guidance import ClassifierFreeGuidance
    from denoisekit.models import load_model
    from denoisekit.recipes.distill import DistillConfig, prepare_distillation, train_stage
    cfg = tmp_path / "t.yaml"
    cfg.write_text("data: digits\nclass_cond: true\nnet: {channels: 8, channel_mult: [1], num_res_blocks: 1, "
                   "attention_levels: []}\nprediction: v\ntrain: {steps: 2, batch_size: 16, progress: false, "
                   "tensorboard: false}\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "t")]) == 0
    dc = DistillConfig.from_dict({"stages": [1], "guidance": 2.0, "train": {"steps": 2, "progress": False,
                                                                            "tensorboard": False}})
    prep = prepare_distillation(dc, tmp_path / "t", tmp_path / "s")
    seen = {}
    import denoisekit.recipes.distill as distill_module
    original = distill_module.Trainer

    def spy(model, loss, *a, **kw):
        seen["teacher"] = loss.teacher
        return original(model, loss, *a, **kw)
    distill_module.Trainer = spy
    try:
        train_stage(prep, prep.teacher, prep.stages[0], True)
    finally:
        distill_module.Trainer = original
    assert isinstance(seen["teacher"], ClassifierFreeGuidance) and seen["teacher"].w == 2.0
    student = load_model(tmp_path / "s" / "stages" / "01-1-steps")
    assert student.num_classes == 10 and student.guidance == ()
    assert student.record["distill"]["guidance"] == 2.0


@pytest.mark.parametrize("extra,message", [
    (["--stages", "8,3"], "stages: each stage's student takes half its teacher's steps"),
    (["--stages", "8,four"], "argument --stages: expected step counts"),
    (["--method", "consistency", "--distance", "lpips"], "loss.distance: expected one of 'l2', 'l1', 'pseudo_huber'"),
    (["--method", "consistency", "--stages", "2,1"], "stages: consistency distillation is one stage"),
    (["--prediction", "eps"], "prediction: a progressive-distillation student predicts"),
    (["--guidance", "2"], "--guidance: classifier-free guidance needs a class- or text-conditional model"),
    (["--set", "loss.steps=4"], "loss.steps: set by stages"),
    (["--set", "loss.weighting=snr"], "loss.weighting: expected one of"),
    (["--set", "train.use_labels=true"], "train.use_labels: set by the teacher's class_cond"),
    (["--set", "train.batch_size=100000"], "train.batch_size: 100000 is larger than the data set"),
    (["--set", "colour=red"], "config: unknown key 'colour'"),
    (["--set", "loss.rho=-1", "--method", "consistency"], "loss.rho: expected a positive number"),
])
def test_distill_refuses_bad_input_in_one_line(teacher, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    try:
        code = main(distill_args(teacher, out, *extra))
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_distill_refuses_a_teacher_that_is_not_a_diffusion_run(teacher, tmp_path, capsys):
    """A folder without a checkpoint, a consistency model, and the teacher's own folder as --out: one line each."""
    (tmp_path / "empty").mkdir()
    assert main(distill_args(tmp_path / "empty", tmp_path / "o1")) == 2
    assert "--teacher: checkpoint: no checkpoint at" in capsys.readouterr().err
    cd = tmp_path / "cd"
    assert main(distill_args(teacher, cd, "--method", "consistency", "--steps-per-stage", "2")) == 0
    capsys.readouterr()
    assert main(distill_args(cd, tmp_path / "o2")) == 2
    err = capsys.readouterr().err.strip()
    assert "--teacher:" in err and "is a consistency model" in err and len(err.splitlines()) == 1
    assert main(distill_args(teacher, teacher)) == 2
    assert "--out: must be a new folder" in capsys.readouterr().err
    shutil.copytree(teacher, tmp_path / "a-run")
    assert main(distill_args(teacher, tmp_path / "a-run")) == 2
    assert "holds a training run (checkpoints/)" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_distill_check_writes_nothing(teacher, tmp_path, capsys):
    assert main(distill_args(teacher, tmp_path / "o", "--check")) == 0
    assert "config valid: progressive distillation 64 -> 1 steps in 6 stages" in capsys.readouterr().out
    assert not (tmp_path / "o").exists()


def test_a_stage_is_not_resumed_from_another_teachers_folder(teacher, tmp_path, capsys):
    """OUT distilled from one teacher, then the same command with another teacher: one line, OUT's stage untouched."""
    from denoisekit.train import find_checkpoint
    other = tmp_path / "other"
    cfg = tmp_path / "t.yaml"
    cfg.write_text(TEACHER.replace("steps: 30,", "steps: 30, seed: 1,"))
    assert main(["train", "--config", str(cfg), "--out", str(other)]) == 0
    out = tmp_path / "pd"
    assert main(distill_args(teacher, out, "--stages", "1", "--steps-per-stage", "10")) == 0
    before = sorted(p.name for p in find_checkpoint(out).parent.iterdir())
    capsys.readouterr()
    for steps in ("20", "10"):  # a stage to resume, and a finished one
        assert main(distill_args(other, out, "--stages", "1", "--steps-per-stage", steps)) == 2
        err = capsys.readouterr().err.strip()
        assert "was distilled from another teacher" in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in find_checkpoint(out).parent.iterdir()) == before

"""The recipe toolkit in recipes/: option parsing, stages, markers, logging, job runners.

Every test drives bash through subprocess, with small scripts written into a temporary
directory that use the pieces the way an egs recipe does.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"
UTILS = RECIPES / "utils"
SHELL_FILES = [
    RECIPES / "path.sh",
    RECIPES / "cmd.sh",
    *sorted(UTILS.glob("*.sh")),
    *sorted(RECIPES.glob("*.sh")),
]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without anything that steers the recipe tools."""
    drop = {"cmd_backend", "train_cmd", "decode_cmd", "cuda_cmd"}
    env = {
        k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SPEECHDISTILL_")
    }
    env.update(extra)
    return env


def run(args, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_script(path: Path, text: str) -> Path:
    path.write_text(text.replace("@RECIPES@", str(RECIPES)))
    path.chmod(0o755)
    return path


# ---- a script that only parses options --------------------------------------------------------

OPTS_SCRIPT = """\
#!/usr/bin/env bash
set -euo pipefail
# begin options
# General
stage=1             # first stage to run
nj=4                # number of parallel jobs
use_gpu=false       # decode on the GPU
# Data
test_sets="dev test"  # sets to decode
sep="a # b"         # a value with a hash
empty=
# end options
not_an_option=secret
help_message="Usage: opts.sh [options] <in> <out>"
. "@RECIPES@/utils/parse_options.sh"
for n in "${opt_names[@]}"; do printf '%s=%s\\n' "$n" "${!n}"; done
for a in "$@"; do printf 'arg=%s\\n' "$a"; done
"""


@pytest.fixture
def opts(tmp_path: Path):
    script = write_script(tmp_path / "opts.sh", OPTS_SCRIPT)

    def call(*args: str):
        return run([script, *args], cwd=tmp_path)

    return call


def parsed(proc) -> tuple[dict[str, str], list[str]]:
    assert proc.returncode == 0, proc.stderr
    values: dict[str, str] = {}
    args: list[str] = []
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        if key == "arg":
            args.append(value)
        else:
            values[key] = value
    return values, args


def test_defaults_and_declared_options(opts):
    values, args = parsed(opts())
    assert values == {
        "stage": "1",
        "nj": "4",
        "use_gpu": "false",
        "test_sets": "dev test",
        "sep": "a # b",
        "empty": "",
    }
    assert args == []


def test_dashes_become_underscores_and_equals_form(opts):
    values, _ = parsed(opts("--nj", "8", "--test-sets", "eval other", "--use-gpu=true", "--empty="))
    assert values["nj"] == "8"
    assert values["test_sets"] == "eval other"
    assert values["use_gpu"] == "true"
    assert values["empty"] == ""
    values, _ = parsed(opts("--test_sets=a=b", "--stage", "train"))
    assert values["test_sets"] == "a=b"
    assert values["stage"] == "train"


def test_positional_arguments_are_kept(opts):
    values, args = parsed(opts("--nj", "2", "in dir", "out", "--nj", "9"))
    assert values["nj"] == "2"  # parsing stops at the first positional argument
    assert args == ["in dir", "out", "--nj", "9"]
    values, args = parsed(opts("--nj", "3", "--", "--not-an-option", "x"))
    assert values["nj"] == "3"
    assert args == ["--not-an-option", "x"]


def test_unknown_option_is_an_error(opts):
    for bad in (["--bogus", "1"], ["--no-such=1"], ["--not-an-option", "x"], ["--PATH", "/x"]):
        proc = opts(*bad)
        assert proc.returncode == 1, bad
        assert f"unknown option '{bad[0].split('=')[0]}'" in proc.stderr
        assert proc.stdout == ""


def test_option_without_value_is_an_error(opts):
    proc = opts("--nj")
    assert proc.returncode == 1
    assert "'--nj' needs a value" in proc.stderr


def test_booleans_accept_only_true_or_false(opts):
    assert parsed(opts("--use_gpu", "true"))[0]["use_gpu"] == "true"
    for bad in ("yes", "1", "True", ""):
        proc = opts("--use-gpu", bad)
        assert proc.returncode == 1, bad
        assert "'--use-gpu' takes true or false" in proc.stderr
    # Only options whose default is true/false are booleans.
    assert parsed(opts("--nj", "true", "--stage", "yes"))[0]["nj"] == "true"


def test_config_file(opts, tmp_path: Path):
    conf = tmp_path / "my.conf"
    conf.write_text('# a comment\nnj=16\ntest_sets="x y"\nuse_gpu=true\n')
    values, args = parsed(opts("--config", str(conf), "pos"))
    assert (values["nj"], values["test_sets"], values["use_gpu"]) == ("16", "x y", "true")
    assert args == ["pos"]
    # The command line wins, before or after --config.
    values, _ = parsed(opts("--nj", "2", f"--config={conf}"))
    assert (values["nj"], values["test_sets"]) == ("2", "x y")
    values, _ = parsed(opts("--config", str(conf), "--nj", "3"))
    assert values["nj"] == "3"

    conf.write_text("nj=2\nnot_declared=1\n")
    proc = opts("--config", str(conf))
    assert proc.returncode == 1
    assert "my.conf:2: unknown option 'not_declared'" in proc.stderr

    conf.write_text("use_gpu=maybe\n")
    proc = opts("--config", str(conf))
    assert proc.returncode == 1
    assert "'use_gpu' takes true or false" in proc.stderr

    proc = opts("--config", str(tmp_path / "missing.conf"))
    assert proc.returncode == 1
    assert "cannot read config file" in proc.stderr


def test_help_lists_every_option_with_its_default(opts):
    for flag in ("--help", "-h"):
        proc = opts("--nj", "6", flag)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        assert out.startswith("Usage: opts.sh [options] <in> <out>\n")
        rows = {
            m.group(1): (m.group(2), m.group(3).strip())
            for m in re.finditer(r'^  --(\w+)=("[^"]*"|\S+)(.*)$', out, re.M)
        }
        assert rows == {
            "stage": ("1", "first stage to run"),
            "nj": ("6", "number of parallel jobs"),  # the current value
            "use_gpu": ("false", "decode on the GPU (true|false)"),
            "test_sets": ('"dev test"', "sets to decode"),
            "sep": ('"a # b"', "a value with a hash"),
            "empty": ('""', ""),
        }
        assert "  # General\n" in out
        assert "  # Data\n" in out
        assert out.index("# General") < out.index("--stage") < out.index("# Data")
        assert "--config FILE" in out
        assert "not_an_option" not in out


def test_kaldi_fallback_without_an_option_block(tmp_path: Path):
    script = write_script(
        tmp_path / "k.sh",
        '#!/usr/bin/env bash\nnj=4\nhelp_message="Usage: k.sh"\n'
        '. "@RECIPES@/utils/parse_options.sh"\necho "nj=$nj n=${#opt_names[@]} args=$*"\n',
    )
    proc = run([script, "--nj", "2", "a"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "nj=2 n=0 args=a\n"
    proc = run([script, "--unset-var", "1"], cwd=tmp_path)
    assert proc.returncode == 1
    assert "unknown option '--unset-var'" in proc.stderr
    proc = run([script, "--help"], cwd=tmp_path)
    assert (proc.returncode, proc.stdout.splitlines()[0]) == (0, "Usage: k.sh")


def test_explicit_opt_names(tmp_path: Path):
    script = write_script(
        tmp_path / "e.sh",
        "#!/usr/bin/env bash\nset -u\nlr=0.1\nopt_names=(lr)\n"
        '# begin options\nnj=1  # jobs\n# end options\n. "@RECIPES@/utils/parse_options.sh"\n'
        'echo "${opt_names[*]} lr=$lr nj=$nj"\n',
    )
    proc = run([script, "--lr", "0.5", "--nj", "2"], cwd=tmp_path)
    assert proc.stdout == "lr nj lr=0.5 nj=2\n", proc.stderr
    assert "--lr=0.1" in run([script, "--help"], cwd=tmp_path).stdout


# ---- a recipe that uses all the pieces ---------------------------------------------------------

RECIPE = """\
#!/usr/bin/env bash
set -euo pipefail
. "@RECIPES@/path.sh"
. "@RECIPES@/cmd.sh"

# begin options
stage=1             # first stage to run
stop_stage=100      # last stage to run
skip_stages=        # stages to skip
force=false         # rerun finished stages
nj=3                # decoding jobs
test_sets="dev test"  # sets to decode
# end options
help_message="Usage: $0 [options] <out-dir>"
. parse_options.sh
. stage.sh

[ $# -eq 1 ] || die "expected one argument, got $#"
out=$1
register_stages 1:prepare 2:format 3:teacher 4:decode
save_config "$out/config.sh"
log "options nj=$nj test_sets=$test_sets"

ran() { echo "$1" >>"$out/ran"; }
if stage_start 1 prepare "$out"; then ran prepare; mark_done "$out" prepare; fi
if stage_enabled 2 format; then ran format; fi
if stage_start 3 teacher "$out"; then ran teacher; mark_done "$out" teacher; fi
if stage_start 4 decode "$out"; then
  ${decode_cmd} JOB=1:"$nj" "$out/log/decode.JOB.log" echo "part JOB of $nj:" "$test_sets"
  ran decode
  mark_done "$out" decode
fi
"""


@pytest.fixture
def recipe(tmp_path: Path):
    script = write_script(tmp_path / "recipe.sh", RECIPE)
    out = tmp_path / "exp"

    def call(*args: str, fresh: bool = True):
        if fresh and out.exists():
            shutil.rmtree(out)
        proc = run([script, *args, out], cwd=tmp_path)
        ran_file = out / "ran"
        proc.ran = ran_file.read_text().split() if ran_file.exists() else []
        if ran_file.exists():
            ran_file.unlink()
        return proc

    call.out = out
    call.script = script
    return call


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ["prepare", "format", "teacher", "decode"]),
        (["--stage", "2", "--stop_stage", "3"], ["format", "teacher"]),
        (["--stage", "format", "--stop-stage", "teacher"], ["format", "teacher"]),
        (["--stage=3"], ["teacher", "decode"]),
        (["--stop_stage", "1"], ["prepare"]),
        (["--skip_stages", "2 4"], ["prepare", "teacher"]),
        (["--skip_stages", "format,decode"], ["prepare", "teacher"]),
        (["--skip-stages", "1 teacher"], ["format", "decode"]),
    ],
)
def test_stage_selection(recipe, args, expected):
    proc = recipe(*args)
    assert proc.returncode == 0, proc.stderr
    assert proc.ran == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stage", "trian"], "--stage 'trian': no such stage"),
        (["--stop_stage", "x"], "--stop_stage 'x': no such stage"),
        (["--skip_stages", "1 fliter"], "--skip_stages 'fliter': no such stage"),
        (["--stage", "3", "--stop_stage", "2"], "--stop_stage 2 is before --stage 3"),
        (["--stage", "5"], "--stage 5: no such stage"),
        (["--skip_stages", "9"], "--skip_stages 9: no such stage"),
    ],
)
def test_unknown_stage_names_fail_early(recipe, args, message):
    proc = recipe(*args)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert proc.ran == []


def test_done_markers_skip_finished_stages(recipe):
    out = recipe.out
    first = recipe()
    assert first.returncode == 0, first.stderr
    assert first.ran == ["prepare", "format", "teacher", "decode"]
    for name in ("prepare", "teacher", "decode"):
        marker = out / f".{name}.done"
        assert marker.is_file()
        assert "recipe.sh" in marker.read_text()

    again = recipe(fresh=False)
    assert again.returncode == 0, again.stderr
    assert again.ran == ["format"]  # stage 2 has no marker: it always runs
    assert "Stage 3 (teacher): already done, skipping" in again.stderr
    assert str(out / ".teacher.done") in again.stderr

    (out / ".teacher.done").unlink()
    assert recipe(fresh=False).ran == ["format", "teacher"]

    forced = recipe("--force", "true", "--stop_stage", "3", fresh=False)
    assert forced.ran == ["prepare", "format", "teacher"]


def test_log_format(recipe):
    proc = recipe("--stop_stage", "1")
    assert proc.returncode == 0, proc.stderr
    line_no = RECIPE.splitlines().index('log "options nj=$nj test_sets=$test_sets"') + 1
    lines = proc.stderr.splitlines()
    assert (
        re.fullmatch(
            rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d \(recipe\.sh:{line_no}:main\) "
            r"options nj=3 test_sets=dev test",
            lines[0],
        )
        is not None
    ), lines[0]
    assert re.search(r"\(recipe\.sh:\d+:main\) Stage 1 \(prepare\): start$", proc.stderr, re.M)
    # die: logged as an error, exit status 1
    proc = run([recipe.script], cwd=recipe.script.parent)
    assert proc.returncode == 1
    assert re.search(r"\(recipe\.sh:\d+:main\) ERROR: expected one argument, got 0$", proc.stderr)


def test_log_names_the_calling_function(tmp_path: Path):
    script = write_script(
        tmp_path / "f.sh",
        '#!/usr/bin/env bash\n. "@RECIPES@/utils/stage.sh"\nhelper() {\n  log "inside"\n}\nhelper\n',
    )
    proc = run([script], cwd=tmp_path)
    assert proc.stdout == ""
    assert proc.stderr.rstrip().endswith("(f.sh:4:helper) inside")


def test_save_config_round_trip(recipe, tmp_path: Path):
    proc = recipe("--nj", "2", "--test_sets", "a b's", "--stop_stage", "1")
    assert proc.returncode == 0, proc.stderr
    saved = recipe.out / "config.sh"
    text = saved.read_text()
    names = [ln.split("=", 1)[0] for ln in text.splitlines() if not ln.startswith("#")]
    assert names == ["stage", "stop_stage", "skip_stages", "force", "nj", "test_sets"]
    assert "# Command line: " in text and "--test_sets" in text
    keep = tmp_path / "saved.sh"
    shutil.copy(saved, keep)
    proc = recipe("--config", str(keep), "--stop_stage", "4")
    assert proc.returncode == 0, proc.stderr
    assert proc.ran == ["prepare", "format", "teacher", "decode"]
    logs = sorted((recipe.out / "log").glob("decode.*.log"))
    assert [p.name for p in logs] == ["decode.1.log", "decode.2.log"]
    assert "part 2 of 2: a b's" in logs[1].read_text()


def test_recipe_runs_jobs_through_decode_cmd(recipe):
    proc = recipe("--stage", "decode")
    assert proc.returncode == 0, proc.stderr
    for job in (1, 2, 3):
        text = (recipe.out / "log" / f"decode.{job}.log").read_text()
        assert f"\npart {job} of 3: dev test\n" in text


# ---- run_local.sh ------------------------------------------------------------------------------

RUN_LOCAL = UTILS / "run_local.sh"


def test_run_local_array_job(tmp_path: Path):
    proc = run(
        [
            RUN_LOCAL,
            "JOB=1:3",
            "exp/log/x.JOB.log",
            "echo",
            "job JOB says",
            "JOB",
            "|",
            "tr",
            "a-z",
            "A-Z",
        ],
        cwd=tmp_path,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    for job in (1, 2, 3):
        lines = (tmp_path / "exp" / "log" / f"x.{job}.log").read_text().splitlines()
        assert lines[0] == rf"# echo job\ {job}\ says {job} | tr a-z A-Z"
        assert lines[1].startswith("# Started at ")
        assert lines[2] == f"JOB {job} SAYS {job}"
        assert re.fullmatch(r"# Ended \(code 0\) at .+, elapsed time \d+\.\d\d seconds", lines[3])
        assert len(lines) == 4


def job_times(paths: list[Path]) -> list[tuple[float, float]]:
    times = []
    for path in paths:
        stamps = dict(ln.split() for ln in path.read_text().splitlines() if ln[:1] in "se")
        times.append((float(stamps["s"]), float(stamps["e"])))
    return sorted(times)


def sleeper(seconds: float) -> str:
    return f"echo s $EPOCHREALTIME; sleep {seconds}; echo e $EPOCHREALTIME"


def test_run_local_runs_jobs_in_parallel(tmp_path: Path):
    proc = run([RUN_LOCAL, "--max-jobs-run", "3", "JOB=1:3", "p/JOB.log", sleeper(1)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    times = job_times([tmp_path / "p" / f"{j}.log" for j in (1, 2, 3)])
    assert max(s for s, _ in times) < min(e for _, e in times)  # all three overlapped


def test_run_local_bounds_the_running_jobs(tmp_path: Path):
    proc = run([RUN_LOCAL, "--max-jobs-run=1", "JOB=1:3", "s/JOB.log", sleeper(0.2)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    times = job_times([tmp_path / "s" / f"{j}.log" for j in (1, 2, 3)])
    for (_, end), (start, _) in itertools.pairwise(times):
        assert start >= end


def test_run_local_reports_failed_jobs(tmp_path: Path):
    proc = run(
        [
            RUN_LOCAL,
            "JOB=1:3",
            "log/f.JOB.log",
            "echo out JOB; echo err JOB >&2; [ JOB != 2 ] || exit 3",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "1 / 3 jobs failed" in proc.stderr
    assert "JOB=2 (exit code 3): log/f.2.log" in proc.stderr
    assert "f.1.log" not in proc.stderr and "f.3.log" not in proc.stderr
    failed = (tmp_path / "log" / "f.2.log").read_text()
    assert "out 2\nerr 2\n" in failed
    assert "# Ended (code 3)" in failed
    assert "# Ended (code 0)" in (tmp_path / "log" / "f.3.log").read_text()


def test_run_local_single_job(tmp_path: Path):
    (tmp_path / "in.txt").write_text("b\na\n")
    proc = run([RUN_LOCAL, "one.log", "sort", "in.txt", ">", "out JOB.txt"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out JOB.txt").read_text() == "a\nb\n"  # no JOB=: nothing replaced
    assert (tmp_path / "one.log").read_text().startswith("# sort in.txt > out\\ JOB.txt\n")

    proc = run([RUN_LOCAL, "two.log", "false"], cwd=tmp_path)
    assert proc.returncode == 1
    assert "the job (exit code 1): two.log" in proc.stderr


def test_run_local_usage_errors(tmp_path: Path):
    proc = run([RUN_LOCAL, "JOB=1:2", "same.log", "true"], cwd=tmp_path)
    assert proc.returncode == 1
    assert "2 jobs would share the log 'same.log'" in proc.stderr
    assert run([RUN_LOCAL, "--frobnicate", "1", "x.log", "true"], cwd=tmp_path).returncode == 1
    assert run([RUN_LOCAL, "x.log"], cwd=tmp_path).returncode == 1
    helped = run([RUN_LOCAL, "--help"], cwd=tmp_path)
    assert helped.returncode == 0
    assert "JOB=A:B" in helped.stdout
    # Resource options are accepted (and ignored) so that cuda_cmd works locally.
    proc = run(
        [RUN_LOCAL, "--gpu", "1", "--mem", "4G", "JOB=2:3", "g.JOB.log", "true"], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.glob("g.*.log")) == ["g.2.log", "g.3.log"]


# ---- slurm.sh ----------------------------------------------------------------------------------

SLURM = UTILS / "slurm.sh"

SLURM_CONF = """\
# test cluster
partition = cpuq
gpu_partition = gpuq   # GPUs live here
mem = 8G
time = 2:00:00
num_threads = 2
sbatch_args = --account=speech --qos=normal
gpu_sbatch_args = --constraint=h100
"""

FAKE_SBATCH = """\
#!/usr/bin/env bash
# A stand-in for `sbatch --wait SCRIPT`: runs the array tasks one after another.
[ "$1" = --wait ] || { echo "fake sbatch: expected --wait" >&2; exit 2; }
echo "$*" >>"$FAKE_SBATCH_CALLS"
script=$2
range=$(sed -n 's/^#SBATCH --array=\\([0-9]*-[0-9]*\\).*/\\1/p' "$script")
dir=$(sed -n 's/^#SBATCH --chdir=//p' "$script")
rc=0
if [ -z "$range" ]; then
  (cd "$dir" && SLURM_JOB_ID=7 bash "$script") || rc=1
  exit $rc
fi
for ((i = ${range%-*}; i <= ${range#*-}; i++)); do
  [ "$i" = "${FAKE_SBATCH_SKIP-}" ] && continue   # a task that never ran
  (cd "$dir" && SLURM_ARRAY_JOB_ID=7 SLURM_ARRAY_TASK_ID=$i bash "$script") || rc=1
done
exit $rc
"""


@pytest.fixture
def slurm_conf(tmp_path: Path) -> Path:
    conf = tmp_path / "test-slurm.conf"
    conf.write_text(SLURM_CONF)
    return conf


def sbatch_lines(text: str) -> list[str]:
    return re.findall(r"^#SBATCH (.*)$", text, re.M)


def test_slurm_dry_run_array_job(tmp_path: Path, slurm_conf: Path):
    proc = run(
        [
            SLURM,
            "--dry-run",
            "--config",
            slurm_conf,
            "JOB=1:4",
            "exp/log/dec.JOB.log",
            "speechdistill",
            "decode",
            "--job",
            "JOB",
            "data/split4/JOB",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    qdir = tmp_path / "exp" / "log" / "q"
    assert sbatch_lines(out) == [
        "--job-name=dec",
        f"--chdir={tmp_path}",
        "--array=1-4",
        f"--output={qdir}/dec.%a.out",
        "--partition=cpuq",
        "--cpus-per-task=2",
        "--mem=8G",
        "--time=2:00:00",
        "--account=speech",
        "--qos=normal",
    ]
    assert "job_cmd='speechdistill decode --job JOB data/split4/JOB'" in out
    assert "job_log='exp/log/dec.JOB.log'" in out
    assert "task=${SLURM_ARRAY_TASK_ID:" in out
    assert "cmd=${job_cmd//JOB/$task}" in out
    assert "log=${job_log//JOB/$task}" in out
    assert out.rstrip().endswith(f"sbatch --wait {qdir}/dec.sh")
    assert not (tmp_path / "exp").exists()  # a dry run writes nothing


def test_slurm_dry_run_command_line_overrides_conf(tmp_path: Path, slurm_conf: Path):
    proc = run(
        [
            SLURM,
            "--dry-run",
            "--config",
            slurm_conf,
            "--gpu",
            "2",
            "--mem=32G",
            "--time",
            "8:00:00",
            "--num-threads",
            "4",
            "--max-jobs-run",
            "2",
            "JOB=3:5",
            "log/t.JOB.log",
            "train.sh",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = sbatch_lines(proc.stdout)
    assert "--array=3-5%2" in lines
    assert "--partition=gpuq" in lines
    assert "--gres=gpu:2" in lines
    assert "--cpus-per-task=4" in lines
    assert "--mem=32G" in lines
    assert "--time=8:00:00" in lines
    assert "--constraint=h100" in lines


@pytest.mark.parametrize(("ngpu", "train_gres", "decode_gres"), [(0, None, None), (4, 4, 1)])
def test_cmd_sh_asks_slurm_for_the_recipes_gpus(tmp_path: Path, ngpu, train_gres, decode_gres):
    """gpu_cmd jobs get --ngpu GPUs (accelerate runs one process per GPU), decoding jobs one;
    with --ngpu 0 both are CPU jobs."""
    script = (
        f"ngpu={ngpu}; cmd_backend=slurm; . {RECIPES / 'cmd.sh'}\n"
        "$gpu_cmd --dry-run train.log true; echo ===; $dec_cmd --dry-run JOB=1:2 d.JOB.log true\n"
    )
    proc = run(["bash", "-c", script], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    train, decode = (sbatch_lines(part) for part in proc.stdout.split("==="))
    for lines, n in ((train, train_gres), (decode, decode_gres)):
        gres = [ln for ln in lines if ln.startswith("--gres")]
        assert gres == ([f"--gres=gpu:{n}"] if n else []), lines


def test_slurm_dry_run_single_job_and_default_conf(tmp_path: Path):
    # Without --config, the recipe's conf/slurm.conf wins over recipes/conf/slurm.conf.
    proc = run([SLURM, "--dry-run", "exp/train.log", "echo", "hi"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = sbatch_lines(proc.stdout)
    assert not any(ln.startswith("--array") for ln in lines)
    assert "--mem=4G" in lines  # from recipes/conf/slurm.conf
    assert "task=1" in proc.stdout
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "slurm.conf").write_text("mem = 1G\npartition = mine\n")
    lines = sbatch_lines(run([SLURM, "--dry-run", "x.log", "true"], cwd=tmp_path).stdout)
    assert "--mem=1G" in lines and "--partition=mine" in lines

    (tmp_path / "conf" / "slurm.conf").write_text("memory = 1G\n")
    proc = run([SLURM, "--dry-run", "x.log", "true"], cwd=tmp_path)
    assert proc.returncode == 1
    assert "unknown key 'memory'" in proc.stderr


def test_slurm_submits_and_checks_the_tasks(tmp_path: Path, slurm_conf: Path):
    fake = write_script(tmp_path / "fake-sbatch", FAKE_SBATCH)
    calls = tmp_path / "calls.txt"
    env = clean_env(SPEECHDISTILL_SBATCH=str(fake), FAKE_SBATCH_CALLS=str(calls))
    args = [
        SLURM,
        "--config",
        slurm_conf,
        "JOB=1:3",
        "exp/log/d.JOB.log",
        "echo",
        "task JOB",
        "|",
        "tr",
        "a-z",
        "A-Z",
    ]
    proc = run(args, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    script = tmp_path / "exp" / "log" / "q" / "d.sh"
    assert calls.read_text() == f"--wait {script}\n"
    assert "--array=1-3" in sbatch_lines(script.read_text())
    for job in (1, 2, 3):
        lines = (tmp_path / "exp" / "log" / f"d.{job}.log").read_text().splitlines()
        assert lines[0] == rf"# echo task\ {job} | tr a-z A-Z"
        assert f"(Slurm job 7_{job})" in lines[1]
        assert lines[2] == f"TASK {job}"
        assert lines[3].startswith("# Ended (code 0)")

    # A task that never ran leaves no log: the stale one from the last run must not count.
    proc = run(args, cwd=tmp_path, env={**env, "FAKE_SBATCH_SKIP": "2"})
    assert proc.returncode == 1
    assert "JOB=2 (did not finish): exp/log/d.2.log" in proc.stderr
    assert "Slurm's output:" in proc.stderr


def test_slurm_reports_failed_tasks(tmp_path: Path, slurm_conf: Path):
    fake = write_script(tmp_path / "fake-sbatch", FAKE_SBATCH)
    env = clean_env(SPEECHDISTILL_SBATCH=str(fake), FAKE_SBATCH_CALLS=str(tmp_path / "c"))
    proc = run(
        [SLURM, "--config", slurm_conf, "JOB=1:2", "l/x.JOB.log", "[ JOB = 1 ] || exit 5"],
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 1
    assert "1 / 2 jobs failed" in proc.stderr
    assert "JOB=2 (exit code 5): l/x.2.log" in proc.stderr


# ---- cmd.sh and path.sh ------------------------------------------------------------------------

SHOW_CMDS = '. "$1"; printf "%s|%s|%s|%s\\n" "$cmd_backend" "$train_cmd" "$decode_cmd" "$cuda_cmd"'


def test_cmd_sh_backends(tmp_path: Path):
    cmd_sh = RECIPES / "cmd.sh"
    proc = run(["bash", "-c", SHOW_CMDS, "x", cmd_sh], cwd=tmp_path)
    assert proc.stdout == "local|run_local.sh|run_local.sh|run_local.sh --gpu 1\n", proc.stderr
    env = clean_env(SPEECHDISTILL_CMD_BACKEND="slurm")
    proc = run(["bash", "-c", SHOW_CMDS, "x", cmd_sh], cwd=tmp_path, env=env)
    assert proc.stdout == "slurm|slurm.sh|slurm.sh|slurm.sh --gpu 1\n", proc.stderr
    proc = run(
        ["bash", "-c", "cmd_backend=local; " + SHOW_CMDS, "x", cmd_sh], cwd=tmp_path, env=env
    )
    assert proc.stdout.startswith("local|")
    fail = 'cmd_backend=pbs; . "$1" || exit 1; echo still here'
    proc = run(["bash", "-c", fail, "x", cmd_sh], cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert "unknown cmd_backend 'pbs'" in proc.stderr
    # The runners are found even without path.sh.
    env = clean_env(PATH="/usr/bin:/bin")
    proc = run(
        ["bash", "-c", '. "$1"; command -v run_local.sh', "x", cmd_sh], cwd=tmp_path, env=env
    )
    assert proc.stdout.strip() == str(UTILS / "run_local.sh")


def test_path_sh_through_a_symlink(tmp_path: Path):
    egs = tmp_path / "egs" / "corpus"
    egs.mkdir(parents=True)
    (egs / "path.sh").symlink_to(os.path.relpath(RECIPES / "path.sh", egs))
    env = clean_env(PATH="/usr/bin:/bin")
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TOKENIZERS_PARALLELISM", None)
    show = (
        '. ./path.sh; . ./path.sh; printf "%s\\n" "$PATH" "$LC_ALL" "$PYTHONUNBUFFERED" '
        '"$TOKENIZERS_PARALLELISM" "${HF_HUB_OFFLINE-unset}" "$SPEECHDISTILL_ROOT"'
    )
    proc = run(["bash", "-c", show], cwd=egs, env=env)
    assert proc.returncode == 0, proc.stderr
    path, lc_all, unbuffered, tok, offline, root = proc.stdout.splitlines()
    entries = path.split(":")
    assert entries[0] == str(UTILS)
    if (REPO / ".venv" / "bin" / "python").exists():
        assert entries[1] == str(REPO / ".venv" / "bin")
    assert len(entries) == len(set(entries))  # sourcing twice adds nothing
    assert entries[-2:] == ["/usr/bin", "/bin"]
    assert (lc_all, unbuffered, tok, offline) == ("C", "1", "false", "unset")
    assert root == str(REPO)
    env["TOKENIZERS_PARALLELISM"] = "true"
    proc = run(["bash", "-c", ". ./path.sh; echo $TOKENIZERS_PARALLELISM"], cwd=egs, env=env)
    assert proc.stdout == "true\n"


# ---- the pipelines use the corpus's own path.sh and cmd.sh -------------------------------------

# A stand-in for speechdistill (put first on PATH by the corpus's path.sh): it says which
# subcommand ran and leaves in every --out DIR what the next stage looks for.
FAKE_SPEECHDISTILL = """\
#!/usr/bin/env bash
out= prev=
for a in "$@"; do
  [ "$prev" = --out ] && out=$a
  prev=$a
done
if [ -n "$out" ]; then
  mkdir -p "$out" && : >"$out/model.safetensors" && : >"$out/text.teacher"
fi
echo "fake speechdistill $1"
"""

# accelerate's launcher (--ngpu above 1): runs the one process.
FAKE_ACCELERATE = """\
#!/usr/bin/env bash
[ "$1 $2 $4 $5" = "launch --num_processes -m speechdistill" ] || exit 2
shift 5
exec speechdistill "$@"
"""

# A site's job runner: records the call (its tag first), then runs the job on this machine.
SITE_RUNNER = """\
#!/usr/bin/env bash
tag=$1
shift
echo "$tag $*" >>site_calls.txt
exec run_local.sh "$@"
"""

CORPUS_PATH_SH = """\
. "@RECIPES@/path.sh"
PATH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bin:$PATH
"""

# What each pipeline runs, and the subcommand of every job it runs through a *_cmd variable:
# (pipeline, options, {subcommand: "gpu" (gpu_cmd) or "dec" (dec_cmd)}).
PIPELINES = {
    "distil_whisper": (
        ["--stage", "pseudo_label", "--stop_stage", "decode", "--filter", "none"],
        {"pseudo-label": "gpu", "train": "gpu", "decode": "dec"},
    ),
    "distil_hubert": (
        ["--stage", "train", "--stop_stage", "decode"],
        {"train": "gpu", "ctc-finetune": "gpu", "ctc-decode": "dec"},
    ),
}


def make_corpus(tmp_path: Path, cmd_sh: str | None, *, link_cmd_sh: bool = False) -> Path:
    """egs/corpus/ with its own path.sh (the fake speechdistill first on PATH) and, as asked,
    its own cmd.sh (@SITE@: the site runner), a symbolic link to recipes/cmd.sh, or none."""
    corpus = tmp_path / "egs" / "corpus"
    (corpus / "bin").mkdir(parents=True)
    write_script(corpus / "bin" / "speechdistill", FAKE_SPEECHDISTILL)
    write_script(corpus / "bin" / "accelerate", FAKE_ACCELERATE)
    write_script(corpus / "site_run.sh", SITE_RUNNER)
    write_script(corpus / "path.sh", CORPUS_PATH_SH)
    if link_cmd_sh:
        (corpus / "cmd.sh").symlink_to(os.path.relpath(RECIPES / "cmd.sh", corpus))
    elif cmd_sh is not None:
        text = cmd_sh.replace("@SITE@", str(corpus / "site_run.sh"))
        write_script(corpus / "cmd.sh", '. "@RECIPES@/cmd.sh"\n' + text)
    (corpus / "dump" / "train").mkdir(parents=True)
    (corpus / "dump" / "train" / "text").write_text("u1 hello\n")  # CTC fine-tuning checks it
    return corpus


def run_pipeline(corpus: Path, pipeline: str, *args: str, env: dict[str, str] | None = None):
    options, _ = PIPELINES[pipeline]
    return run(
        [RECIPES / f"{pipeline}.sh", *options, "--test_sets", "test", *args],
        cwd=corpus,
        env=env,
    )


def runner_calls(corpus: Path) -> dict[str, list[str]]:
    """speechdistill subcommand -> the tags of the site runner's calls that ran it."""
    calls: dict[str, list[str]] = {}
    path = corpus / "site_calls.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        words = line.split()  # TAG [OPTION...] [JOB=A:B] LOG COMMAND...
        log = next(i for i, w in enumerate(words) if w.endswith(".log"))
        sub = words[words.index("speechdistill") + 1]
        calls.setdefault(sub, []).append(" ".join(words[:log]))
    return calls


def assert_jobs_ran(corpus: Path, pipeline: str):
    """Every job the pipeline runs through a *_cmd left a run_local.sh log of the fake job."""
    _, jobs = PIPELINES[pipeline]
    logs = sorted(corpus.glob("exp/**/log/*.log"))
    for sub in jobs:
        mine = [p for p in logs if f"\nfake speechdistill {sub}\n" in p.read_text()]
        assert mine, (sub, logs)
        for p in mine:
            text = p.read_text()
            assert text.startswith("# ") and "\n# Started at " in text, p
            assert re.search(r"\n# Ended \(code 0\) at .+\n$", text), p


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
@pytest.mark.parametrize(
    ("cmd_sh", "ngpu", "expected"),
    [
        # gpu_cmd and dec_cmd follow the overridden cuda_cmd and decode_cmd
        ('cuda_cmd="@SITE@ cuda"\ndecode_cmd="@SITE@ decode"\n', 0,
         {"gpu": "cuda --gpu 0", "dec": "decode"}),
        ('cuda_cmd="@SITE@ cuda"\ndecode_cmd="@SITE@ decode"\n', 2,
         {"gpu": "cuda --gpu 2", "dec": "cuda --gpu 1"}),
        # set themselves: kept (and the cmd.sh sees the parsed --ngpu)
        ('gpu_cmd="@SITE@ gpu --gpu ${ngpu} --mem 200G"\n', 3,
         {"gpu": "gpu --gpu 3 --mem 200G", "dec": None}),
        ('cuda_cmd="@SITE@ cuda"\ndec_cmd="@SITE@ dec --mem 8G"\n', 1,
         {"gpu": "cuda --gpu 1", "dec": "dec --mem 8G"}),
        ('decode_cmd="@SITE@ decode"\n', 0, {"gpu": None, "dec": "decode"}),
    ],
    ids=["cuda-decode-cpu", "cuda-decode-ngpu2", "gpu_cmd", "dec_cmd", "decode-only"],
)  # fmt: skip
def test_pipeline_runs_jobs_through_the_corpus_cmd_sh(tmp_path, pipeline, cmd_sh, ngpu, expected):
    """A site's egs/<corpus>/cmd.sh (recipes/cmd.sh, then overrides) decides how the real
    pipeline runs its jobs; commands it leaves alone stay on run_local.sh."""
    corpus = make_corpus(tmp_path, cmd_sh)
    proc = run_pipeline(corpus, pipeline, "--ngpu", str(ngpu))
    assert proc.returncode == 0, proc.stderr
    assert_jobs_ran(corpus, pipeline)
    _, jobs = PIPELINES[pipeline]
    want = {sub: expected[kind] for sub, kind in jobs.items() if expected[kind] is not None}
    calls = runner_calls(corpus)
    assert set(calls) == set(want), calls
    for sub, tags in calls.items():
        assert set(tags) == {want[sub]}, (sub, tags)


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
@pytest.mark.parametrize("how", ["symlink", "missing"])
def test_pipeline_without_overrides_runs_jobs_locally(tmp_path, pipeline, how):
    """cmd.sh linked to recipes/cmd.sh (as egs/* have it), or none at all (recipes/cmd.sh is
    used, and the log says so): every job runs through run_local.sh, whatever job commands the
    calling environment holds."""
    corpus = make_corpus(tmp_path, None, link_cmd_sh=how == "symlink")
    site = f"{corpus / 'site_run.sh'} env"
    env = clean_env(
        **{v: site for v in ("train_cmd", "decode_cmd", "cuda_cmd", "gpu_cmd", "dec_cmd")}
    )
    proc = run_pipeline(corpus, pipeline, env=env)
    assert proc.returncode == 0, proc.stderr
    assert_jobs_ran(corpus, pipeline)
    assert runner_calls(corpus) == {}
    assert "gpu_cmd='run_local.sh --gpu 1 --gpu 0' dec_cmd='run_local.sh'" in proc.stderr
    fallback = f"no cmd.sh in {corpus}: using {RECIPES / 'cmd.sh'} (backend local)"
    assert (fallback in proc.stderr) == (how == "missing"), proc.stderr


def test_pipeline_needs_the_job_commands(tmp_path: Path):
    """A cmd.sh that does not source recipes/cmd.sh and leaves a command unset fails at once."""
    corpus = make_corpus(tmp_path, None)
    (corpus / "cmd.sh").write_text('train_cmd=run_local.sh\ndecode_cmd="run_local.sh"\n')
    proc = run_pipeline(corpus, "distil_whisper")
    assert proc.returncode == 1
    assert "ERROR: ./cmd.sh does not set cuda_cmd" in proc.stderr
    assert not list(corpus.glob("exp/**/log/*.log"))
    # With all three set, gpu_cmd and dec_cmd are derived from them.
    (corpus / "cmd.sh").write_text(
        f'train_cmd=run_local.sh\ndecode_cmd="run_local.sh"\ncuda_cmd="{corpus}/site_run.sh c"\n'
    )
    proc = run_pipeline(corpus, "distil_whisper", "--ngpu", "1")
    assert proc.returncode == 0, proc.stderr
    calls = runner_calls(corpus)
    assert {s: set(tags) for s, tags in calls.items()} == {
        s: {"c --gpu 1"} for s in ("pseudo-label", "train", "decode")
    }
    assert len(calls["decode"]) == 2  # the teacher and the student


def test_corpus_env_falls_back_to_the_recipes_path_sh(tmp_path: Path):
    env = clean_env(PATH="/usr/bin:/bin")
    show = (
        'ngpu=1; . "$1"; printf "%s\\n" "$SPEECHDISTILL_ROOT" "${PATH%%:*}" "$gpu_cmd" "$dec_cmd"'
    )
    proc = run(["bash", "-c", show, "x", UTILS / "corpus_env.sh"], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        str(REPO),
        str(UTILS),
        "run_local.sh --gpu 1 --gpu 1",
        "run_local.sh --gpu 1 --gpu 1",
    ]
    assert f"no path.sh in {tmp_path}: using {RECIPES / 'path.sh'}" in proc.stderr


@pytest.mark.parametrize("corpus", sorted(p.name for p in (REPO / "egs").iterdir() if p.is_dir()))
def test_every_egs_recipe_has_a_working_path_sh_and_cmd_sh(corpus: str):
    """What the pipelines source from egs/<corpus>/: present, and giving the local defaults."""
    egs = REPO / "egs" / corpus
    for name in ("path.sh", "cmd.sh"):
        assert (egs / name).is_file(), name
    show = (
        'ngpu=2; . "$1"; printf "%s\\n" "$SPEECHDISTILL_ROOT" "$train_cmd" "$gpu_cmd" "$dec_cmd";'
        " command -v run_local.sh"
    )
    proc = run(["bash", "-c", show, "x", UTILS / "corpus_env.sh"], cwd=egs)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        str(REPO),
        "run_local.sh",
        "run_local.sh --gpu 1 --gpu 2",
        "run_local.sh --gpu 1 --gpu 1",
        str(UTILS / "run_local.sh"),
    ]
    assert "no path.sh" not in proc.stderr and "no cmd.sh" not in proc.stderr


def test_pipelines_source_the_corpus_env():
    for name in ("distil_whisper.sh", "distil_hubert.sh"):
        text = (RECIPES / name).read_text()
        assert '. "${recipes}/utils/corpus_env.sh"' in text, name
        assert not re.search(r'^\. "\$\{recipes\}/(cmd|path)\.sh"', text, re.M), name


# ---- static checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHELL_FILES, ids=lambda p: p.name)
def test_bash_syntax(path: Path):
    proc = run(["bash", "-n", path], cwd=REPO)
    assert proc.returncode == 0, proc.stderr


def test_runners_are_executable():
    for name in ("run_local.sh", "slurm.sh"):
        assert os.access(UTILS / name, os.X_OK), name


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck():
    proc = run(["shellcheck", "-x", "-s", "bash", *SHELL_FILES], cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- long-form test sets -----------------------------------------------------------------------

# Records every call; leaves the hypotheses each decode writes and each score's results.json.
FAKE_SPEECHDISTILL_LOG = """\
#!/usr/bin/env bash
echo "$*" >>"$(dirname "$0")/../calls.txt"
out= prev=
for a in "$@"; do
  [ "$prev" = --out ] && out=$a
  prev=$a
done
case $1 in
  decode) mkdir -p "$out" && echo "u1 hi" >"$out/text" ;;
  score) mkdir -p "$out" && echo "{}" >"$out/results.json" ;;
esac
"""


def test_long_test_sets_are_decoded_long_form_and_scored_by_recording(tmp_path: Path):
    corpus = make_corpus(tmp_path, None, link_cmd_sh=True)
    write_script(corpus / "bin" / "speechdistill", FAKE_SPEECHDISTILL_LOG)
    for d in ("data/long", "dump/long", "dump/test", "exp/student"):
        (corpus / d).mkdir(parents=True, exist_ok=True)
    (corpus / "data/long/segments").write_text("r1-a r1 0 5\n")
    (corpus / "data/long/text").write_text("r1-a hello\n")
    (corpus / "dump/test/text").write_text("u1 hi\n")
    (corpus / "exp/student/model.safetensors").write_bytes(b"")
    proc = run(
        [
            RECIPES / "distil_whisper.sh",
            "--stage",
            "decode",
            "--stop_stage",
            "score",
            "--test_sets",
            "test",
            "--long_test_sets",
            "long",
            "--long_decode_opts",
            "--condition-on-prev-tokens false",
            "--speed_max_utts",
            "0",
        ],
        cwd=corpus,
    )
    assert proc.returncode == 0, proc.stderr
    calls = (corpus / "calls.txt").read_text().splitlines()
    for m in ("teacher", "student"):
        # the recordings of the segmented data dir, whole
        decode = [c for c in calls if c.startswith("decode --long-form") and f"exp/{m} " in c]
        assert (
            len(decode) == 1
            and "--data data/long --out exp/" + m + "/decode_long_long" in decode[0]
        )
        assert decode[0].endswith("--condition-on-prev-tokens false")  # --long_decode_opts
        score = [c for c in calls if c.startswith("score") and "decode_long_long/text" in c]
        assert any(f"--model {m} --name long_long" in c for c in score)
        assert all("--ref dump/long/reco_text" in c for c in score)
    assert "data reco-text data/long dump/long/reco_text" in calls
    results = next(c for c in calls if c.startswith("results --out exp/RESULTS.md"))
    assert "exp/student/decode_long_long/score_wer/results.json" in results
    assert "exp/teacher/decode_test/score_wer/results.json" in results


# ---- --pack true -----------------------------------------------------------------------------


def test_pack_formats_and_labels_the_packed_train_set_with_timestamps(tmp_path: Path):
    corpus = make_corpus(tmp_path, None, link_cmd_sh=True)
    write_script(corpus / "bin" / "speechdistill", FAKE_SPEECHDISTILL_LOG)
    args = ["--stage", "format", "--stop_stage", "filter", "--test_sets", "test"]
    proc = run(
        [RECIPES / "distil_whisper.sh", *args, "--pack", "true", "--pack_opts", "--gap 0.3"],
        cwd=corpus,
    )
    assert proc.returncode == 0, proc.stderr
    calls = (corpus / "calls.txt").read_text().splitlines()
    assert "data pack data/train data/train_packed --gap 0.3" in calls
    formats = [c for c in calls if c.startswith("format ")]
    assert [c.split()[1] for c in formats] == ["data/train_packed", "data/dev", "data/test"]
    assert (
        "--audio-dir dump/wav/train_packed --min-duration 0.1 --max-duration 30.0 --skip-bad"
        in formats[0]
    )
    label = next(c for c in calls if c.startswith("pseudo-label "))
    assert (
        "--data dump/train_packed --out dump/train_packed_pl" in label and "--timestamps" in label
    )
    assert any(
        c.startswith("filter --data dump/train_packed_pl --out dump/train_packed_pl_label_free")
        for c in calls
    )
    assert (corpus / "dump/train_packed/.format.done").is_file()
    assert not (corpus / "dump/.format.done").exists()
    config = (corpus / "exp/config.sh").read_text()
    assert "\npack=true\n" in config and "\ntrain_set=train\n" in config  # the options as given

    # switching --pack off formats the utterances (stage 2's marker is elsewhere), without packing
    (corpus / "calls.txt").unlink()
    proc = run(
        [
            RECIPES / "distil_whisper.sh",
            "--stage",
            "format",
            "--stop_stage",
            "format",
            "--test_sets",
            "test",
        ],
        cwd=corpus,
    )
    assert proc.returncode == 0, proc.stderr
    calls = (corpus / "calls.txt").read_text().splitlines()
    assert not any(c.startswith("data pack") for c in calls)
    assert [c.split()[1] for c in calls if c.startswith("format ")] == [
        "data/train",
        "data/dev",
        "data/test",
    ]

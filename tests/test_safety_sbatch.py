"""Issue 18, escaping by construction: no profile, sweep or command-line value reaches an sbatch script
or a shell unchecked. Injected newlines are refused at load time; the rendered script is checked line by
line here by an independent parser, and run with bash and a stand-in ``srun`` to show nothing executes."""

from __future__ import annotations

import functools
import os
import shlex
import stat
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fm4npp.cli.main import main
from fm4npp.config import load_dataclass
from fm4npp.errors import ConfigError
from fm4npp.sweep.clusters import ClusterProfile, load_cluster
from fm4npp.sweep.executors import array_groups, render_sbatch
from fm4npp.sweep.plan import make_plan
from fm4npp.sweep.spec import SweepSpec

INJECT = "x\ntouch PWNED\n#"


def _profile(**over: Any) -> ClusterProfile:
    return replace(load_cluster("perlmutter"), **over)


@functools.cache
def _groups(results_dir: str, study: str) -> tuple[Any, ...]:
    prof = load_cluster("perlmutter")
    spec = load_dataclass(
        SweepSpec,
        {
            "study": study,
            "models": ["q1"],
            "datasets": ["qd1"],
            "seeds": [0, 1],
            "results_dir": results_dir,
        },
        "sweep.yaml",
    )
    plan = make_plan(spec, prof)
    return tuple(array_groups(list(plan.cells), prof, prof.get_qos(plan.qos)[1]))


def _script(
    prof: ClusterProfile, study: str = "s", results_dir: str = "/r", account: str | None = None
) -> str:
    """The sbatch script of a 2-cell array (the plan's cost does not depend on the sbatch values)."""
    group = _groups(results_dir, "s")[0]
    folder = Path(results_dir).resolve() / study / "submitit"
    return render_sbatch(
        group, prof, prof.default_qos, account or prof.account, f"fm4npp-{study}", folder
    )


def _parse(script: str, prof: ClusterProfile) -> tuple[list[str], list[str]]:
    """(directives, commands) of a script; fails on any line that is neither (test's own parser)."""
    directives, commands = [], []
    for line in script.split("\n"):
        if line.startswith("#SBATCH "):
            rest = line[len("#SBATCH ") :]
            words = shlex.split(rest)
            assert len(words) == 1, line
            assert words[0].startswith("--"), line
            directives.append(words[0])
        elif line.startswith("#") or line == "":
            continue
        elif line in prof.setup or line == "export SUBMITIT_EXECUTOR=slurm":
            commands.append(line)
        else:
            words = shlex.split(line)
            assert words[0] == "srun", line
            assert words[-4:-1] == ["-u", "-m", "submitit.core._submit"], line
            commands.append(line)
    return directives, commands


@pytest.mark.parametrize(
    "field",
    ["account", "constraint", "partition", "gpu_bind", "extra_key", "extra_value", "qos_name", "setup"],
)
def test_newline_in_profile_value_is_refused(field: str) -> None:
    qos = load_cluster("perlmutter").qos
    over: dict[str, Any] = {
        "extra_key": {"extra_sbatch": (f"--{INJECT}=1",)},
        "extra_value": {"extra_sbatch": (f"--mail-type={INJECT}",)},
        "qos_name": {"qos": {**qos, INJECT: qos["regular"]}},
        "setup": {"setup": (f"module load x{INJECT}",)},
    }.get(field, {field: INJECT})
    with pytest.raises(ConfigError) as err:
        _profile(**over)
    assert "\n" not in str(err.value)


def test_profile_file_with_injected_account_is_refused(tmp_path: Path) -> None:
    doc = yaml.safe_load((Path(__file__).parents[1] / "sweeps/clusters/perlmutter.yaml").read_text())
    doc["account"] = "m1_g\n#SBATCH --qos=premium\n#"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="account"):
        load_cluster(str(path))


def test_cli_account_injection_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"study: s\nmodels: [q1]\ndatasets: [qd1]\nresults_dir: {tmp_path / 'res'}\n")
    code = main(
        [
            "submit",
            str(sweep),
            "--cluster",
            "perlmutter",
            "--dry-run",
            "--account",
            "m1_g\n#SBATCH --qos=premium\n#",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert "account" in err
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("study", ["t\n", "t\r", "t\n#SBATCH --qos=premium", "\nt"])
def test_study_name_with_trailing_newline_is_refused(study: str) -> None:
    with pytest.raises(ConfigError, match="study"):
        load_dataclass(SweepSpec, {"study": study, "models": ["q1"], "datasets": ["qd1"]}, "s.yaml")


def test_results_dir_with_newline_is_refused() -> None:
    with pytest.raises(ConfigError, match="results_dir"):
        load_dataclass(
            SweepSpec,
            {"study": "t", "models": ["q1"], "datasets": ["qd1"], "results_dir": f"res{INJECT}"},
            "s.yaml",
        )


def test_rendered_script_run_by_bash_executes_nothing_injected(tmp_path: Path) -> None:
    """A hostile but newline-free results_dir, quoted: bash with a stand-in srun runs only srun."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "srun.args"
    fake = bindir / "srun"
    fake.write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {shlex.quote(str(log))}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    results = tmp_path / "res $(touch PWNED1) `touch PWNED2`; touch PWNED3 '\""
    script = _script(_profile(setup=()), results_dir=str(results))
    _parse(script, _profile(setup=()))
    path = tmp_path / "job.sh"
    path.write_text(script)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    subprocess.run(["bash", str(path)], cwd=tmp_path, env=env, check=True, timeout=30)
    assert not list(tmp_path.glob("PWNED*"))
    args = log.read_text().splitlines()
    assert args[-1] == str(results.resolve() / "s" / "submitit")  # the folder arrives as one argument


_FIELDS = (
    "account",
    "partition",
    "constraint",
    "gpu_bind",
    "extra_sbatch",
    "qos_name",
    "setup",
    "study",
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(_FIELDS), value=st.text(min_size=0, max_size=30))
def test_fuzz_any_value_is_refused_or_rendered_safely(field: str, value: str) -> None:
    """Random strings in every profile/sweep field: ConfigError at load time, or a script whose every
    line is a comment, a directive with one value, a setup line or the job command."""
    base = load_cluster("perlmutter")
    try:
        if field == "extra_sbatch":
            prof = replace(base, extra_sbatch=(value,))
        elif field == "qos_name":
            prof = replace(base, qos={value: base.qos["regular"]}, default_qos=value)
        elif field == "setup":
            prof = replace(base, setup=(value,))
        elif field == "study":
            prof = base
        else:
            prof = replace(base, **{field: value})
        study = value if field == "study" else "s"
        spec_check = load_dataclass(
            SweepSpec, {"study": study, "models": ["q1"], "datasets": ["qd1"]}, "sweep.yaml"
        )
    except ConfigError as err:
        assert "\n" not in str(err)  # noqa: PT017
        return
    script = _script(prof, study=spec_check.study)  # a loaded profile always renders
    directives, commands = _parse(script, prof)
    assert sum(d.startswith("--account=") for d in directives) == 1
    assert sum(d.startswith("--qos=") for d in directives) == 1
    assert len([c for c in commands if c.startswith("srun")]) == 1

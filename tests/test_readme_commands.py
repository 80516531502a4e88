"""Every command the README shows parses and validates, so that a documented command cannot rot.

Issue 26: ``--config.rules='("bptt","rflo")'`` on a finished main job (README,
"Where to go next") stopped with an error. Each ``python -m experiments.<x>``
command of the README's ``bash`` blocks and of its "Where to go next" list runs
here as written, except that its ``--workdir`` is a fresh temporary folder and it
gets ``--dry_run`` (``train``, ``sweep``, ``headline``, ``reproduce``: validate
the config, list what would run, write nothing). ``figures`` and ``report`` take
no config: they run on an empty folder and must fail only for the missing results
file (one ``error:`` line, nothing written), not for their flags. The processes
are bounded by that work (no training); the timeout only catches a hang.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.test_reliability import LAUNCH_TIMEOUT, REPO

DRY_RUN = ("train", "sweep", "headline", "reproduce")


def _bash_blocks(text: str) -> list[str]:
  return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def _where_to_go_next(text: str) -> str:
  start = text.index("Where to go next:")
  return text[start : text.index("\n## ", start)]


def readme_commands() -> list[str]:
  """``python -m experiments.*`` commands of the README, continuation lines joined."""
  with open(os.path.join(REPO, "README.md")) as f:
    text = f.read()
  commands = []
  for block in _bash_blocks(text):
    for line in block.replace("\\\n", " ").splitlines():
      line = line.split(" #", 1)[0].strip()
      for part in line.split("&&"):
        if part.strip().startswith("python -m experiments."):
          commands.append(" ".join(part.split()))
  nxt = _where_to_go_next(text)
  commands += [" ".join(c.split()) for c in re.findall(r"`(python -m experiments\.[^`]+)`", nxt)]
  # Fragments shown as "any field" of the main job: `--config.rules='(...)'`.
  fragments = re.findall(r"`(--config\.[^`]+)`", nxt)
  commands += [f"python -m experiments.headline {c}" for c in fragments if "<" not in c]
  return list(dict.fromkeys(commands))


def test_the_readme_shows_the_commands_this_test_checks():
  commands = readme_commands()
  assert len(commands) >= 14, commands
  for needle in (
    'experiments.headline --config.rules=\'("bptt","rflo")\'',
    "experiments.headline --config=configs/sweeps/paper_seq_mnist.py --workdir=runs/paper",
    "experiments.figures --workdir=runs/headline",
    "experiments.report --workdir=runs/headline",
  ):
    assert any(needle in c for c in commands), needle


def _prepared(command: str, workdir: str) -> tuple[str, list[str]]:
  args = shlex.split(command)[2:]  # after "python -m"
  module = args[0].split(".", 1)[1]
  args = [a for a in args[1:] if not a.startswith("--workdir")]
  return module, [*args, f"--workdir={workdir}"] + (["--dry_run"] if module in DRY_RUN else [])


def test_every_readme_command_parses_and_validates(tmp_path):
  commands = readme_commands()
  procs = []
  for i, command in enumerate(commands):
    workdir = str(tmp_path / f"w{i}")
    os.makedirs(workdir)
    module, args = _prepared(command, workdir)
    proc = subprocess.Popen(
      [sys.executable, "-m", f"experiments.{module}", *args],
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    procs.append((command, module, workdir, proc))
    if len(procs) % 2 == 0:  # two at a time: the machine may be shared
      procs[-2][3].wait(timeout=LAUNCH_TIMEOUT)
  failures = []
  for command, module, workdir, proc in procs:
    out, err = proc.communicate(timeout=LAUNCH_TIMEOUT)
    if module in DRY_RUN:
      ok = proc.returncode == 0 and "Traceback" not in err
    else:  # figures, report: only the missing results may stop them
      missing = "does not exist" in err or "no results.csv in" in err
      ok = proc.returncode == 1 and missing and "Traceback" not in err
    if not ok or os.listdir(workdir):
      failures.append(
        f"{command}: exit {proc.returncode}, wrote {os.listdir(workdir)}\n{err[-800:]}"
      )
  assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("module", ["figures", "report"])
def test_figures_and_report_fail_on_flags_they_do_not_have(module, tmp_path):
  """The check above tells a missing results file from a bad flag."""
  proc = subprocess.run(
    [sys.executable, "-m", f"experiments.{module}", f"--workdir={tmp_path}", "--no_such_flag=1"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=LAUNCH_TIMEOUT,
    check=False,
  )
  assert proc.returncode == 1 and "does not exist" not in proc.stderr
  assert "no_such_flag" in proc.stderr

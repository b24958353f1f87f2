"""What `mailctl bench` shows a person: a report readable at 80 columns (every number whole),
a progress bar with rate and ETA, Ctrl-C news once, baseline wording by each metric's
direction, and only the phases a mode measures. Real processes against the embedded sink;
terminal behaviour under a pseudo-terminal."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from terminal import run_on_terminal, run_with_columns
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.errors import ExitCode

runner = CliRunner()
COMPARE = ["bench", "--compare", "-n", "150", "-c", "2"]
# A number as the report writes it: digits with thousands commas and a decimal part, maybe
# followed by x (speedup) or % (a change).
NUMBER = re.compile(r"(?<![\w.,])\d[\d,]*(?:\.\d+)?(?![\w.,]*\d)")


def numbers_in(text: str) -> set[str]:
    return set(NUMBER.findall(text))


def assert_fits(text: str, width: int) -> None:
    for line in text.splitlines():
        assert len(line) <= width, f"{len(line)} > {width} columns: {line!r}\n{text}"
    assert "…" not in text, text  # rich's ellipsis: a number or word cut short


def formats(value: float, fmt: str) -> set[str]:
    """`value` formatted as the report does; both neighbours of a tie, because the JSON keeps
    a rounded figure (qps to 0.1, durations to the microsecond) and the table rounds again."""
    digits = int(fmt.rsplit(".", 1)[1][0]) if "." in fmt else 0
    step = 10.0**-digits
    found = {format(value, fmt)}
    for nudge in (-step / 2, step / 2):
        found.add(format(value + nudge * 0.999, fmt))
    return found


def expected_figures(data: dict[str, Any]) -> list[tuple[str, set[str]]]:
    """Every figure of a bench --json `data` that the human report shows, each as its
    acceptable formattings."""
    figures: list[tuple[str, set[str]]] = []
    for run in data["runs"]:
        mode = run["mode"]
        for key in ("sent", "failed", "unknown", "connections_opened"):
            figures.append((f"{mode} {key}", {str(run[key]), f"{run[key]:,}"}))
        figures.append((f"{mode} qps", formats(run["qps"], ",.0f")))
        for key in ("p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms"):
            figures.append((f"{mode} {key}", formats(run["latency"][key], ".2f")))
        if run["speedup_vs_new"] is not None:
            figures.append((f"{mode} speedup", formats(run["speedup_vs_new"], ".1f")))
        for name, phase in run["phases"].items():
            for key in ("p50_ms", "p99_ms"):
                figures.append((f"{mode} {name} {key}", formats(phase[key], ".2f")))
            figures.append((f"{mode} {name} count", {str(phase["count"]), f"{phase['count']:,}"}))
    return figures


def render(result: object, width: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """The bench report of `result` as printed on a console `width` columns wide."""
    from mailctl.cli.bench import _command_result
    from mailctl.cli.output import Output, make_console

    monkeypatch.setenv("COLUMNS", str(width))
    buffer = io.StringIO()
    output = Output(["bench"])
    output._out = make_console(file=buffer)
    command = _command_result(result)  # type: ignore[arg-type]
    assert command.render is not None
    command.render(output)
    return buffer.getvalue()


@pytest.mark.parametrize("width", [80, 120])
def test_every_figure_of_the_json_appears_whole(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One run, two views: each number of its JSON is in the table, uncut, within `width`."""
    from mailctl.core.bench import (
        BenchMode,
        BenchRequest,
        Target,
        Workload,
        build_message,
        run_bench,
    )
    from mailctl.serialize import to_data

    request = BenchRequest(
        target=Target(),
        workload=Workload(message=build_message(2000), messages=150, concurrency=2),
        modes=(BenchMode.NEW, BenchMode.REUSE, BenchMode.PIPELINE),
    )
    result = run_bench(request)
    text = render(result, width, monkeypatch)
    assert_fits(text, width)
    shown = numbers_in(text)
    data = to_data(result)
    missing = [name for name, ways in expected_figures(data) if not ways & shown]
    assert not missing, f"not shown whole: {missing}\n{text}"


def test_compare_at_80_columns_in_a_subprocess() -> None:
    process = run_with_columns(COMPARE, columns=80)
    assert process.returncode == 0, process.stderr
    assert_fits(process.stdout, 80)
    shown = numbers_in(process.stdout)
    assert "150" in shown  # each mode sent all 150
    for header in ("mode", "sent", "msg/s", "p50", "p99.9", "max", "speedup"):
        assert re.search(rf"(?<!\S){re.escape(header)}(?!\S)", process.stdout), header


def test_compare_at_120_columns_keeps_header_lines_whole() -> None:
    process = run_with_columns(COMPARE, columns=120)
    assert process.returncode == 0, process.stderr
    assert_fits(process.stdout, 120)
    lines = process.stdout.splitlines()
    # The column headers of the main table are on one line, in order.
    header = next(line for line in lines if " msg/s " in f"{line} ")
    assert re.search(r"mode\s+sent\s+failed\s+unknown\s+msg/s\s+p50\s+p90\s+p99\s+p99\.9", header)
    # The summary line names the target whole: not cut mid-word by the terminal.
    assert any(re.search(r"embedded sink 127\.0\.0\.1:\d+\b", line) for line in lines)


def test_compare_on_an_80_column_terminal() -> None:
    """A real terminal of 80 columns (no COLUMNS): the report fits, nothing is cut."""
    run = run_on_terminal(COMPARE, columns=80, stderr_on_terminal=False)
    assert run.code == 0, run.stderr.decode()
    screen = run.screen.replace("\r\n", "\n")
    assert "pipeline" in screen and "speedup" in screen
    assert_fits(screen, 80)


# -- baseline wording ------------------------------------------------------------------------


def test_baseline_says_better_for_an_improvement(tmp_path: Path) -> None:
    args = ["bench", "-n", "150", "-c", "2", "--mode", "pipeline"]
    saved = runner.invoke(app, [*args, "--json"])
    assert saved.exit_code == 0, saved.output
    report = json.loads(saved.stdout)
    run = report["data"]["runs"][0]
    run["qps"] = run["qps"] / 50  # the saved run was far slower...
    run["latency"]["p99_ms"] = run["latency"]["p99_ms"] * 50  # ...and far slower at p99
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(report))
    checked = runner.invoke(app, [*args, "--baseline", str(baseline)], env={"COLUMNS": "80"})
    assert checked.exit_code == 0, checked.output
    lines = [line for line in checked.stdout.splitlines() if "baseline" in line.lower()]
    qps = next(line for line in lines if "msg/s" in line or "qps" in line)
    p99 = next(line for line in lines if "p99" in line)
    for line in (qps, p99):
        assert "better" in line and "worse" not in line, line
        assert "-" not in line.split("(", 1)[-1], line  # no "(-98.0% ...)"


def test_baseline_says_worse_for_a_regression(tmp_path: Path) -> None:
    args = ["bench", "-n", "150", "-c", "2", "--mode", "pipeline"]
    saved = runner.invoke(app, [*args, "--json"])
    report = json.loads(saved.stdout)
    report["data"]["runs"][0]["qps"] *= 100
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(report))
    checked = runner.invoke(app, [*args, "--baseline", str(baseline)], env={"COLUMNS": "80"})
    assert checked.exit_code == ExitCode.REGRESSION, checked.output
    qps = next(
        line
        for line in checked.stdout.splitlines()
        if "baseline" in line.lower() and ("msg/s" in line or "qps" in line)
    )
    assert "worse" in qps and "better" not in qps and "REGRESSED" in qps, qps
    # The error line says which way it went, in words, not as a signed change.
    assert "worse" in checked.stderr and "(+" not in checked.stderr, checked.stderr


# -- phases of the pipeline mode ---------------------------------------------------------------


def test_pipeline_reports_only_the_phases_it_measures() -> None:
    result = runner.invoke(app, ["bench", "-n", "100", "-c", "2", "--json"])
    assert result.exit_code == 0, result.output
    phases = json.loads(result.stdout)["data"]["runs"][0]["phases"]
    # MAIL, RCPT and DATA share one write and their replies come back together: neither the
    # envelope nor DATA has a time of its own, so they are not reported (not as zeros).
    assert "data" not in phases and "mail_rcpt" not in phases
    assert "end_of_data" in phases and phases["end_of_data"]["count"] == 100
    human = runner.invoke(app, ["bench", "-n", "100", "-c", "2"], env={"COLUMNS": "80"})
    rows = [  # the rows of the phase table: "name  p50 / p99 (count)"
        line.split()[0]
        for line in human.stdout.splitlines()
        if re.match(r"\w+ +[\d.]+ / [\d.]+ \([\d,]+\)$", line)
    ]
    assert "end_of_data" in rows and "data" not in rows and "mail_rcpt" not in rows


def test_pipeline_csv_leaves_unmeasured_phases_empty(tmp_path: Path) -> None:
    samples = tmp_path / "s.csv"
    result = runner.invoke(app, ["bench", "-n", "20", "-c", "1", "--csv", str(samples)])
    assert result.exit_code == 0, result.output
    rows = samples.read_text().splitlines()
    head = rows[0].split(",")
    for row in rows[1:]:
        cells = dict(zip(head, row.split(","), strict=True))
        assert cells["mail_rcpt_ms"] == "" and cells["data_ms"] == ""
        assert float(cells["end_of_data_ms"]) > 0


# -- progress and Ctrl-C on a terminal ---------------------------------------------------------


def _progress_lines(screen: str) -> list[str]:
    return [part for part in re.split(r"[\r\n]+", screen) if part.startswith("pipeline")]


def test_progress_bar_shows_rate_and_eta() -> None:
    run = run_on_terminal(["bench", "-n", "60000", "-c", "2"], columns=80, stdout_on_terminal=False)
    assert run.code == 0, run.screen
    frames = _progress_lines(run.screen)
    assert frames, run.screen
    late = frames[len(frames) // 2 :]
    assert any(re.search(r"[\d,]+ msg/s", frame) for frame in late), frames
    assert any(re.search(r"ETA \d+:\d\d", frame) for frame in late), frames
    assert all(len(frame) <= 80 for frame in frames), frames


def test_duration_progress_is_determinate() -> None:
    """With --duration the end is known: a percentage that grows, and an ETA."""
    run = run_on_terminal(
        ["bench", "--duration", "2", "-c", "2"], columns=80, stdout_on_terminal=False
    )
    assert run.code == 0, run.screen
    frames = _progress_lines(run.screen)
    percents = [int(m.group(1)) for f in frames if (m := re.search(r"(\d+)%", f))]
    assert percents and max(percents) >= 50, frames
    assert percents == sorted(percents), percents
    assert any(re.search(r"ETA \d+:\d\d", frame) for frame in frames), frames
    assert not any("/?" in frame for frame in frames), frames


def test_ctrl_c_news_is_printed_once() -> None:
    seen = {"frames": 0}

    def sending(terminal: bytes) -> bool:
        seen["frames"] = terminal.count(b"msg/s")
        return seen["frames"] >= 5  # the bar has moved a few times: messages are flowing

    run = run_on_terminal(
        ["bench", "--duration", "30", "-c", "2"],
        columns=80,
        stdout_on_terminal=False,
        ctrl_c_when=sending,
    )
    assert run.code == ExitCode.INTERRUPTED, run.screen
    news = [line for line in run.screen.splitlines() if "interrupted" in line]
    assert len(news) == 1, run.screen
    assert "partial" in news[0]
    assert "pipeline" in run.stdout.decode()  # the partial report itself

"""The `healer` command line.

Bad input (an unknown scenario, a playbook that does not validate, a port in use, a
setting out of range) ends the command with a one-line error naming what is wrong and
exit code 2, never a traceback; an unexpected exception is a bug and shows one.
"""

from __future__ import annotations

import gc
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from healer.cli_incidents import incidents_app
from healer.errors import ConfigError, HealerError

if TYPE_CHECKING:
    from datetime import datetime

    from healer.detect.train import Evaluation
    from healer.diagnose.learned import Example
    from healer.types import Feedback

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="healer: a self-healing agent for Kubernetes.",
)
sim_app = typer.Typer(no_args_is_help=True, help="The simulated Kubernetes cluster.")
playbooks_app = typer.Typer(no_args_is_help=True, help="Playbook files.")
app.add_typer(sim_app, name="sim")
app.add_typer(playbooks_app, name="playbooks")
app.add_typer(incidents_app, name="incidents")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks on the simulated cluster.")
app.add_typer(bench_app, name="bench")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Settings YAML file.")]


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@app.command()
def run(
    config: ConfigOpt = None,
    kubeconfig: Annotated[
        Path | None, typer.Option(help="Kubeconfig; default in-cluster, then ~/.kube/config.")
    ] = None,
    context: Annotated[str | None, typer.Option(help="Kubeconfig context.")] = None,
    prometheus: Annotated[
        str | None, typer.Option(help="Prometheus base URL; default prometheus.url.")
    ] = None,
    once: Annotated[bool, typer.Option(help="Run one cycle and exit.")] = False,
    shards: Annotated[
        int | None,
        typer.Option(min=0, help="Shard Leases to spread workloads over; default sharding.shards."),
    ] = None,
) -> None:
    """Run the loop against a real cluster: its Kubernetes API and a Prometheus server.

    Serves the API and review page on api.host:api.port while it runs. With several
    replicas, leader election (leader.*) lets one act; the others serve the API. The
    mode comes from the settings (guards.mode, dry_run by default): nothing changes in
    the cluster until it says auto or approval. SIGTERM stops it cleanly.
    """
    from healer.config import load_settings
    from healer.logs import configure

    cluster = {k: v for k, v in (("kubeconfig", kubeconfig), ("context", context)) if v}
    given: dict[str, Any] = {"prometheus": {"url": prometheus}} if prometheus else {}
    if shards is not None:
        given["sharding"] = {"shards": shards}
    if config is not None and not config.is_file():
        raise ConfigError(f"--config {config}: no such settings file")
    settings = load_settings(config, cluster=cluster, **given)
    # The daemon's modules (seconds of imports) only once the settings hold: a bad
    # setting is answered at once.
    from healer.runner import start

    configure(level="info")
    # On a terminal, one line per incident step; in a cluster the JSON log has them.
    daemon = start(
        settings, serve_api=not once, report=_print_step if sys.stdout.isatty() else None
    )
    resumed = len(daemon.store.unresolved())
    typer.echo(
        f"healer run: {daemon.identity}, mode {settings.guards.mode}, {daemon.playbooks} "
        f"playbooks, {resumed} open incidents; metrics from {settings.prometheus.url}"
        + (f"; API {daemon.api.url}" if daemon.api else "")
    )
    if daemon.api and not settings.api.tokens:
        typer.echo("healer run: no api.tokens configured: every /api/v1 request is refused")
    stop = threading.Event()
    _stop_on_signals(stop)
    # What start-up built (modules, models, playbooks: some 300,000 objects) lives as
    # long as the process: out of the collector's reach, a full collection (which the
    # many lists of a large Prometheus answer set off) no longer walks it each time while
    # holding the GIL, which the Lease thread needs to renew in time.
    gc.collect()  # garbage left by start-up is freed, not kept for good
    gc.freeze()
    daemon.serve(stop, once=once)
    missed = daemon.missed_cycle() if once and not stop.is_set() else None
    if missed is not None:  # --once checks a configuration: a cycle that did not run fails it
        raise HealerError(f"healer run --once: no cycle ran: {missed}")
    typer.echo(f"healer run: stopped after {daemon.healer.vitals.cycles} cycles")


@app.command()
def demo(
    port: Annotated[
        int | None, typer.Option(help="Port of the API and review page [default: 8080].")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address of the API [default: 127.0.0.1].")
    ] = None,
    mode: Annotated[str, typer.Option(help="auto, approval or dry_run.")] = "auto",
    speed: Annotated[
        float, typer.Option(min=0.1, help="Simulated seconds per real second.")
    ] = 30.0,
    duration: Annotated[
        float | None, typer.Option(min=0, help="Simulated seconds to run; default until Ctrl-C.")
    ] = None,
    scenario: Annotated[str, typer.Option(help="Built-in scenario name or YAML file.")] = "default",
    db: Annotated[
        Path | None,
        typer.Option(
            help="SQLite file of the audit store; default store.url when the settings "
            "or HEALER_STORE__URL set it, else a new temporary file. On a store with "
            "history, simulated time resumes after it."
        ),
    ] = None,
    playbooks: Annotated[
        Path | None, typer.Option(help="Playbook directory [default: playbooks].")
    ] = None,
    config: ConfigOpt = None,
    token: Annotated[
        str | None,
        typer.Option(help="Operator token of the API and review page; default a new random one."),
    ] = None,
) -> None:
    """Run healer, the simulated cluster and the API in one process.

    Options given here win over the settings file and the environment; options left out
    take their value from those, then from the defaults.
    """
    from healer.config import ApiToken, StoreSettings, load_settings
    from healer.logs import configure
    from healer.sim.scenario import load_scenario

    configure(level="warning")  # the demo prints its own line per step
    # The input first: a bad scenario or setting is named at once, before the API, the
    # simulator and the detector are imported (seconds).
    chosen = load_scenario(scenario)
    listen = {key: value for key, value in (("host", host), ("port", port)) if value is not None}
    given = {"playbooks_dir": str(playbooks)} if playbooks is not None else {}
    settings = load_settings(config, guards={"mode": mode}, api=listen, **given)

    from healer.api.app import create_app
    from healer.api.auth import hash_token, new_token
    from healer.api.server import ServerThread, bind
    from healer.audit.store import AuditStore
    from healer.harness import SimHarness

    workdir = Path(tempfile.mkdtemp(prefix="healer-demo-"))
    # --db wins; else store.url from the settings file or HEALER_STORE__URL; else a new file.
    if db is not None or "url" not in settings.store.model_fields_set:
        url = f"sqlite:///{db or workdir / 'audit.db'}"
        settings = settings.model_copy(update={"store": StoreSettings(url=url)})
    operator_token = token or new_token()
    demo_token = ApiToken(name="demo-operator", role="operator", sha256=hash_token(operator_token))
    api_settings = settings.api.model_copy(update={"tokens": (*settings.api.tokens, demo_token)})
    settings = settings.model_copy(update={"api": api_settings})
    sock = bind(settings.api.host, settings.api.port)
    store = AuditStore(settings.store.url)
    try:
        harness = SimHarness.start(
            chosen, settings=settings, store=store, report=_print_step, workdir=workdir
        )
    except BaseException:
        sock.close()
        raise
    readiness = lambda: harness.healer.readiness(harness.cluster.clock.now())  # noqa: E731
    app_ = create_app(
        store=store,
        status=harness.healer.status,
        readiness=readiness,
        settings=settings,
        playbooks=harness.healer.playbooks,
        models_dir=Path("models"),
        clock=harness.cluster.clock.now,
        watched=lambda: harness.healer.watching,
    )
    api = ServerThread(app_, sock).start()
    start = harness.cluster.scenario.start
    resumed = " (after the audit store's history)" if start != chosen.start else ""
    typer.echo(
        f"healer demo: scenario {chosen.name!r} at {speed:g}x "
        f"(simulated time starts {start:%Y-%m-%d %H:%M} UTC{resumed})"
    )
    typer.echo(f"  API and review page  {api.url}/   incidents: {api.url}/api/v1/incidents")
    typer.echo(f"  simulated cluster    {harness.server.url}   kubeconfig: {harness.kubeconfig}")
    typer.echo(f"  audit store          {settings.store.url}")
    typer.echo(f"  operator token       {operator_token}")
    typer.echo("  Ctrl-C stops.")
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        harness.run_realtime(speed=speed, duration_s=duration, stop=stop)
    finally:
        api.stop()
        harness.close()
        store.close()
    typer.echo("healer demo: stopped")


def _print_step(step: object) -> None:
    from healer.daemon import Step

    assert isinstance(step, Step)
    label = {
        "finding": "FINDING",
        "diagnosis": "DIAGNOSIS",
        "plan": "PLAN",
        "action": "ACTION",
        "outcome": "OUTCOME",
    }.get(step.kind, step.kind.upper())
    typer.echo(
        f"[{step.at:%H:%M:%S}] #{step.incident_id:<3} {step.workload!s:<16} {label:<9} {step.text}"
    )


@sim_app.command("serve")
def sim_serve(
    port: Annotated[int, typer.Option(help="Port of the Kubernetes API and /metrics.")] = 6443,
    kubeconfig_out: Annotated[
        Path, typer.Option("--kubeconfig-out", help="Where to write the kubeconfig.")
    ] = Path("sim-kubeconfig.yaml"),
    scenario: Annotated[str, typer.Option(help="Built-in scenario name or YAML file.")] = "default",
    speed: Annotated[float, typer.Option(min=0.1, help="Simulated seconds per real second.")] = 1.0,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Serve the simulated cluster alone: its Kubernetes API and its /metrics."""
    from healer.api.server import ServerThread, bind
    from healer.sim.apiserver import create_api, write_kubeconfig
    from healer.sim.cluster import Cluster
    from healer.sim.scenario import load_scenario

    chosen = load_scenario(scenario)
    sock = bind(host, port)
    cluster = Cluster(chosen)
    server = ServerThread(create_api(cluster), sock).start()
    write_kubeconfig(kubeconfig_out, server.url)
    typer.echo(
        f"simulated cluster {chosen.name!r}: API {server.url}, metrics "
        f"{server.url}/metrics, kubeconfig {kubeconfig_out}"
    )
    for app, url in cluster.git_remotes.items():
        typer.echo(f"git repository of GitOps application {app!r}: {url}")
    stop = threading.Event()
    _stop_on_signals(stop)
    step_wall_s = chosen.step_s / speed
    try:
        while not stop.wait(step_wall_s):
            cluster.advance(chosen.step_s)
    finally:
        server.stop()


@sim_app.command("scenarios")
def sim_scenarios() -> None:
    """List the built-in scenarios, one line each."""
    from healer.sim.scenario import summaries

    rows = summaries()
    width = max(len(name) for name, _ in rows)
    for name, summary in rows:
        typer.echo(f"{name:<{width}}  {summary}")


@playbooks_app.command("validate")
def playbooks_validate(
    directory: Annotated[Path, typer.Argument(help="Directory of playbook YAML files.")],
) -> None:
    """Load and validate every playbook; print one line per playbook."""
    from healer.decide import load_playbooks

    for book in load_playbooks(directory):
        typer.echo(f"ok  {book.name}")


@app.command("token")
def token_new() -> None:
    """Print a new random API token and the sha256 that goes in api.tokens."""
    from healer.api.auth import hash_token, new_token

    value = new_token()
    typer.echo(f"token   {value}\nsha256  {hash_token(value)}")


@app.command("score-csv")
def score_csv(
    source: Annotated[Path, typer.Argument(help="CSV with timestamp,value columns.")],
    target: Annotated[Path, typer.Argument(help="Where to write timestamp,value,anomaly_score.")],
    detector: Annotated[str, typer.Option(help="Univariate detector name.")] = "discord",
    strict_timestamps: Annotated[
        bool,
        typer.Option(
            help="Refuse a timestamp equal to or earlier than the row before's (by default "
            "such rows are scored in file order, with a warning)."
        ),
    ] = False,
) -> None:
    """Score one series online: each row's score uses that row and the rows before it."""
    from healer.detect.csvscore import score_csv as run

    series = run(source, target, detector=detector, strict_timestamps=strict_timestamps)
    warning = series.timestamps_summary()
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"{source}: {len(series.timestamps)} rows scored -> {target}")


@app.command("eval")
def eval_folder(
    directory: Annotated[Path, typer.Argument(help="Folder of category/name.csv series.")],
    labels: Annotated[Path, typer.Option(help="NAB combined_windows.json label file.")],
    detector: Annotated[str, typer.Option(help="Univariate detector name.")] = "discord",
    out: Annotated[
        Path | None, typer.Option(help="Folder to write the score-csv output of every file.")
    ] = None,
) -> None:
    """Score every labelled series and print the NAB-rule scores of the three profiles."""
    from healer.detect.csvscore import evaluate_folder, report

    for line in report(evaluate_folder(directory, labels, detector=detector, out=out)):
        typer.echo(line)


@app.command()
def train(
    scenario: Annotated[
        list[str] | None, typer.Option(help="Train on this simulated scenario (repeatable).")
    ] = None,
    duration: Annotated[
        float, typer.Option(min=900, help="Simulated seconds of history per scenario.")
    ] = 6 * 3600.0,
    csv: Annotated[
        list[Path] | None, typer.Option("--csv", help="Train on this history CSV (repeatable).")
    ] = None,
    prometheus: Annotated[
        str | None, typer.Option(help="Train on Prometheus history; default prometheus.url.")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="Start of the Prometheus range (ISO 8601, UTC).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="End of the Prometheus range.")] = None,
    eval_scenario: Annotated[
        list[str] | None,
        typer.Option(help="Evaluate on this scenario instead of the training history."),
    ] = None,
    feedback: Annotated[
        bool, typer.Option(help="Use operators' labels from the audit store (store.url).")
    ] = False,
    models_dir: Annotated[
        Path | None, typer.Option(help="Where to save and register; default detector.models_dir.")
    ] = None,
    version: Annotated[str | None, typer.Option(help="Version name; default joint-N.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the fit.")] = 0,
    config: ConfigOpt = None,
) -> None:
    """Train the multivariate model, evaluate it against the detector in service, register it."""
    from datetime import UTC, datetime

    from healer.config import load_settings
    from healer.detect import registry
    from healer.detect.train import train as fit
    from healer.errors import ConfigError
    from healer.history import csv_history, prometheus_history, sim_history

    given = {"prometheus": {"url": prometheus}} if prometheus else {}
    settings = load_settings(config, **given)
    histories = [sim_history(name, duration_s=duration, progress=True) for name in scenario or []]
    if csv:
        histories.append(csv_history(csv))
    if start or end:
        if not (start and end):
            raise ConfigError("--start and --end go together")
        histories.append(
            prometheus_history(settings.prometheus, start=_utc(start), end=_utc(end), progress=True)
        )
    if not histories:
        raise ConfigError("no history: give --scenario, --csv, or --start/--end (Prometheus)")
    held = [sim_history(name, duration_s=duration, progress=True) for name in eval_scenario or []]
    labels = _store_feedback(settings.store.url) if feedback else []
    folder = models_dir or settings.detector.models_dir
    current = settings.detector.model_version
    result = fit(
        histories,
        now=datetime.now(UTC),
        feedback=labels,
        evaluate_on=held or None,
        in_service=registry.load(current, models_dir=folder).model if current else None,
        models_dir=folder,
        version=version,
        settings=settings.detector,
        params={"random_state": seed},
        progress=True,
    )
    typer.echo(f"registered {result.version}: {result.card_path}")
    for line in _comparison(result.candidate, result.in_service, current or "streaming alone"):
        typer.echo(line)


def _utc(text: str) -> datetime:
    from datetime import UTC, datetime

    from healer.errors import ConfigError

    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"not an ISO 8601 time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _store_examples(config: Path | None) -> list[Example]:
    from healer.audit.store import AuditStore
    from healer.config import load_settings
    from healer.groundtruth import examples_from_store

    store = AuditStore(load_settings(config).store.url)
    try:
        return examples_from_store(store)
    finally:
        store.close()


def _store_feedback(url: str) -> list[Feedback]:
    from healer.audit.store import AuditStore

    store = AuditStore(url)
    try:
        return store.feedback()
    finally:
        store.close()


def _comparison(candidate: Evaluation, current: Evaluation, name: str) -> list[str]:
    labels = ("windows detected", "median delay s", "false alarms /100 wl-h", "NAB standard")
    out = [f"{'':<24}{'candidate':>12}{name:>20}"]
    for label, new, old in zip(labels, _cells(candidate), _cells(current), strict=True):
        out.append(f"{label:<24}{new:>12}{old:>20}")
    return out


def _cells(e: Evaluation) -> tuple[str, str, str, str]:
    return (
        f"{e.detected}/{e.windows}",
        "-" if e.median_delay_s is None else f"{e.median_delay_s:g}",
        f"{e.false_alarms_per_100_workload_hours:.2f}",
        "-" if e.nab_standard is None else f"{e.nab_standard:.1f}",
    )


@app.command()
def collect(
    prometheus: Annotated[
        str | None,
        typer.Option(help="Prometheus base URL; default prometheus.url of the settings."),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="One cycle, then exit.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per cycle.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Fetch what a cycle would see from Prometheus, to check a configuration.

    Prints workloads x signals, the share of gaps per signal and each query's time,
    every daemon.interval_s (incremental fetches after the first) until Ctrl-C.
    """
    import json
    from datetime import UTC, datetime

    import numpy as np

    from healer.collect.prometheus import PrometheusSource
    from healer.config import load_settings
    from healer.logs import configure

    configure(level="warning")  # warnings and retries on stderr; the report on stdout
    given = {"prometheus": {"url": prometheus}} if prometheus else {}
    settings = load_settings(config, **given)
    source = PrometheusSource.from_settings(settings.prometheus)
    stop = threading.Event()
    _stop_on_signals(stop)
    while True:
        frame = source.fetch(until=datetime.now(UTC), window_s=settings.daemon.window_s)
        signals: dict[str, dict[str, float]] = {
            str(signal): {
                # Nothing seen at all counts as all gaps.
                "gap_share": float(np.isnan(frame.values[:, s]).mean())
                if frame.values[:, s].size
                else 1.0,
                "query_seconds": round(source.stats.query_seconds.get(signal, 0.0), 4),
            }
            for s, signal in enumerate(frame.signals)
        }
        if json_out:
            typer.echo(json.dumps({"workloads": len(frame.workloads), "signals": signals}))
        else:
            url = settings.prometheus.url or ""
            _print_collect(url, frame, signals, incremental=source.stats.incremental)
        if once or stop.wait(settings.daemon.interval_s):
            return


@app.command()
def rules(config: ConfigOpt = None) -> None:
    """Print the Prometheus recording rules for these settings (a rules file, YAML).

    Load it into Prometheus (rule_files:) and set prometheus.recording_rules: true.
    """
    from healer.collect.rules import rules_file
    from healer.config import load_settings

    p = load_settings(config).prometheus
    text = rules_file(
        signal_set=p.signal_set,
        window_s=p.rate_window_s,
        mapping=p.workload_mapping,
        pod_label=p.workload_label,
        interval_s=p.step_s,
    )
    typer.echo(text, nl=False)


def _print_collect(
    url: str, frame: object, signals: dict[str, dict[str, float]], *, incremental: bool
) -> None:
    from datetime import UTC, datetime

    from healer.types import Frame

    assert isinstance(frame, Frame)
    steps = len(frame.timestamps)
    span = ""
    if steps:
        first, last = (
            f"{datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M:%S}"
            for t in (frame.timestamps[0], frame.timestamps[-1])
        )
        span = f" from {first} to {last} UTC"
    kind = "incremental" if incremental else "full"
    typer.echo(
        f"{url}: {len(frame.workloads)} workloads x {len(frame.signals)} signals, "
        f"{steps} steps{span} ({kind} fetch)"
    )
    typer.echo(f"  {'signal':<14}{'gaps':>8}{'query s':>10}")
    for name, row in signals.items():
        typer.echo(f"  {name:<14}{row['gap_share']:>8.1%}{row['query_seconds']:>10.3f}")


@app.command("train-diagnoser")
def train_diagnoser(
    out: Annotated[Path, typer.Argument(help="Where to write the skops file (card beside).")],
    scenarios: Annotated[
        str, typer.Option(help="Comma-separated scenarios whose ground truth to learn.")
    ] = "memory-leak,overload,bad-release,crash-loop,cpu-hog,benign-day,default,storm",
    seeds: Annotated[int, typer.Option(min=1, help="Runs of each scenario.")] = 2,
    hours: Annotated[float, typer.Option(min=0.5, help="Cluster time per run.")] = 2.5,
    playbooks_dir: Annotated[Path, typer.Option(help="Playbooks the runs load.")] = Path(
        "playbooks"
    ),
    feedback: Annotated[
        bool, typer.Option(help="Add operators' labels from the audit store (store.url).")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Train the learned diagnoser on the simulator's ground truth (and, with
    --feedback, operators' labels); point ``diagnosis_model`` at the file to use it."""
    from collections import Counter

    from healer.diagnose.learned import LearnedDiagnoser
    from healer.groundtruth import examples_from_scenarios
    from healer.logs import configure

    configure(level="warning")
    names = [name.strip() for name in scenarios.split(",") if name.strip()]
    examples = examples_from_scenarios(
        names, hours=hours, playbooks_dir=playbooks_dir, seeds=range(seeds)
    )
    if feedback:
        examples += _store_examples(config)
    if not examples:
        raise ConfigError("no labelled diagnoses: give --scenarios, or --feedback with labels")
    card = LearnedDiagnoser().fit(examples).save(out)
    counts = Counter(str(e.cause) for e in examples)
    typer.echo(f"{len(examples)} labelled diagnoses {dict(counts)} -> {out} ({card.name})")


@bench_app.command("chaos")
def bench_chaos(
    scenarios: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated scenario names or files (default: all but large-cluster)."
        ),
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per scenario.")] = 5,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write one JSON record per fault and run here.")
    ] = None,
    plots: Annotated[
        Path | None, typer.Option(help="Write one PNG chart per scenario in this directory.")
    ] = None,
    jobs: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: one per CPU).")
    ] = None,
    config: ConfigOpt = None,
    start: Annotated[
        str,
        typer.Option(
            help="How healer's detector starts: warm (the days before the scenario "
            "learned, as in a daemon's second week), cold (empty), or both (healer and "
            "healer-cold side by side)."
        ),
    ] = "warm",
) -> None:
    """Closed-loop chaos: healer against Kubernetes alone and static thresholds.

    Each scenario runs with several seeds in virtual time under three contenders on
    identical clusters (four with --start both); healer runs with the configured
    settings in auto mode.
    """
    from healer.chaos.bench import main as chaos

    names = [n.strip() for n in scenarios.split(",") if n.strip()] if scenarios else None
    chaos(names, seeds=seeds, json_out=json_out, plots=plots, config=config, jobs=jobs, start=start)


# What the `sim` extra installs: the simulated cluster, the chaos benchmark, and the
# packages only they import (pyproject.toml).
SIM_EXTRA_MODULES = ("healer.sim", "healer.chaos", "jsonpatch", "matplotlib")


# --- healer gate: a pipeline's release verdict -------------------------------------------


@app.command()
def gate(
    workload: Annotated[
        str, typer.Option(help="namespace/name (a Deployment) or namespace/Kind/name.")
    ],
    window: Annotated[
        str, typer.Option("--for", help="Longest wait for the rollout and verdict: 10m, 90s.")
    ] = "10m",
    config: ConfigOpt = None,
    prometheus: Annotated[
        str | None, typer.Option(help="Prometheus base URL; default prometheus.url.")
    ] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option(help="Kubeconfig; default in-cluster, then ~/.kube/config.")
    ] = None,
    context: Annotated[str | None, typer.Option(help="Kubeconfig context.")] = None,
    rollback: Annotated[
        bool, typer.Option(help="Roll an unhealthy release back before exiting 1.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
    false_fail: Annotated[
        float, typer.Option(min=0.0001, max=0.2, help="Chance of failing a healthy release.")
    ] = 0.01,
) -> None:
    """Judge a release: exit 0 healthy, 1 unhealthy (rolled back with --rollback), 2 could
    not judge. Waits for the rollout, then compares the new revision with the previous
    one through the detector's learned baselines; stops as soon as the verdict is clear."""
    import json as json_module

    from healer.api.release_events import parse_workload
    from healer.config import load_settings
    from healer.detect.sequential import SequentialTest
    from healer.gate import GateSettings, deps_from_settings, describe, parse_duration, run_gate

    try:
        target = parse_workload(workload)
    except ValueError as exc:
        raise ConfigError(f"--workload: {exc}") from exc
    try:
        window_s = parse_duration(window)
    except ValueError as exc:
        raise ConfigError(f"--for: {exc}") from exc
    cluster = {k: v for k, v in (("kubeconfig", kubeconfig), ("context", context)) if v}
    given = {"prometheus": {"url": prometheus}} if prometheus else {}
    if config is not None and not config.is_file():
        raise ConfigError(f"--config {config}: no such settings file")
    settings = load_settings(config, cluster=cluster, **given)
    p = settings.prometheus
    verdict = run_gate(
        target,
        GateSettings(
            window_s=window_s,
            step_s=float(p.step_s),
            thin_s=float(max(p.step_s, p.rate_window_s)),
            detector=settings.detector,
            test=SequentialTest(false_fail=false_fail),
            rollback=rollback,
        ),
        deps_from_settings(settings),
    )
    if as_json:
        typer.echo(json_module.dumps(verdict.to_json(), ensure_ascii=False))
    else:
        typer.echo("\n".join(describe(verdict)))
    raise typer.Exit(verdict.exit_code)


def _needs_sim_extra(exc: ModuleNotFoundError) -> bool:
    name = exc.name or ""
    return any(name == m or name.startswith(f"{m}.") for m in SIM_EXTRA_MODULES)


@app.command("api")
def api_serve(
    config: ConfigOpt = None,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="Processes; default api.workers.")
    ] = None,
) -> None:
    """Serve the API and review page alone, over the store the daemon writes.

    Listens on api.host:api.port in api.workers processes (``--workers``), for when
    people and dashboards ask more than the daemon's own API answers; approvals reach
    the daemon through the store. SIGTERM or Ctrl-C stops it.
    """
    from healer.apiworkers import ApiWorkers, serve
    from healer.config import load_settings
    from healer.logs import configure

    if config is not None and not config.is_file():
        raise ConfigError(f"--config {config}: no such settings file")
    settings = load_settings(config, api={"workers": workers} if workers else {})
    configure(level="info")
    stop = threading.Event()
    _stop_on_signals(stop)
    typer.echo(
        f"healer api: {settings.api.workers} processes on "
        f"http://{settings.api.host}:{settings.api.port}, store {settings.store.url}"
    )
    serve(ApiWorkers(settings, settings.api.workers), stop=stop)
    typer.echo("healer api: stopped")


def main() -> None:
    try:
        app()
    except HealerError as exc:
        typer.echo(f"healer: error: {exc}", err=True)
        sys.exit(2)
    except ModuleNotFoundError as exc:
        if not _needs_sim_extra(exc):
            raise
        typer.echo(
            f"healer: error: this command needs the simulated cluster ({exc.name} is "
            "missing): install healer[sim], e.g. pip install 'healer[sim]'",
            err=True,
        )
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C before a command installed its own handler
        sys.exit(130)


if __name__ == "__main__":
    main()

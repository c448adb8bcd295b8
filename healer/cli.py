"""The `healer` command line.

Bad input (an unknown scenario, a playbook that does not validate, a port in use, a
setting out of range) ends the command with a one-line error naming what is wrong and
exit code 2, never a traceback; an unexpected exception is a bug and shows one.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Annotated

import typer

from healer.cli_incidents import incidents_app
from healer.errors import HealerError

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
) -> None:
    """Run the loop against a real cluster: its Kubernetes API and a Prometheus server.

    Serves the API and review page on api.host:api.port while it runs. The mode comes
    from the settings (guards.mode, dry_run by default): nothing changes in the cluster
    until it says auto or approval.
    """
    from datetime import UTC, datetime

    from healer.act.kube import KubeActuator, api_client
    from healer.api.app import create_app
    from healer.api.server import ServerThread, bind
    from healer.audit.store import AuditStore
    from healer.collect.prometheus import PrometheusSource
    from healer.config import load_settings
    from healer.daemon import Healer, run_forever
    from healer.decide import load_playbooks
    from healer.detect.streaming import StreamingDetector
    from healer.logs import configure

    cluster = {k: v for k, v in (("kubeconfig", kubeconfig), ("context", context)) if v}
    given = {"prometheus": {"url": prometheus}} if prometheus else {}
    settings = load_settings(config, cluster=cluster, **given)
    configure(level="info")
    playbooks = load_playbooks(settings.playbooks_dir)
    actuator = KubeActuator(api_client(settings.cluster.kubeconfig, settings.cluster.context))
    source = PrometheusSource.from_settings(settings.prometheus)
    sock = None if once else bind(settings.api.host, settings.api.port)
    store = AuditStore(settings.store.url)
    healer = Healer(
        source=source,
        detector=StreamingDetector(settings.detector),
        actuator=actuator,
        store=store,
        playbooks=playbooks,
        settings=settings,
        report=_print_step,
    )
    resumed = healer.resume()
    api = (
        ServerThread(
            create_app(
                store=store,
                status=healer.status,
                readiness=lambda: healer.readiness(datetime.now(UTC)),
                settings=settings,
                playbooks=playbooks,
                models_dir=Path("models"),
            ),
            sock,
        ).start()
        if sock
        else None
    )
    typer.echo(
        f"healer run: mode {settings.guards.mode}, {len(playbooks)} playbooks, "
        f"{resumed} incidents resumed; metrics from {settings.prometheus.url}"
        + (f"; API {api.url}" if api else "")
    )
    if api and not settings.api.tokens:
        typer.echo("healer run: no api.tokens configured: every /api/v1 request is refused")
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        run_forever(
            healer,
            interval_s=settings.daemon.interval_s,
            stop=stop,
            now=lambda: datetime.now(UTC),
            cycles=1 if once else None,
        )
    finally:
        if api:
            api.stop()
        store.close()
    typer.echo(f"healer run: stopped after {healer.cycles} cycles")


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
        typer.Option(help="SQLite file of the audit store; default a new temporary file."),
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
    from healer.api.app import create_app
    from healer.api.auth import hash_token, new_token
    from healer.api.server import ServerThread, bind
    from healer.audit.store import AuditStore
    from healer.config import ApiToken, load_settings
    from healer.harness import SimHarness
    from healer.logs import configure
    from healer.sim.scenario import load_scenario

    configure(level="warning")  # the demo prints its own line per step
    chosen = load_scenario(scenario)
    workdir = Path(tempfile.mkdtemp(prefix="healer-demo-"))
    url = f"sqlite:///{db or workdir / 'audit.db'}"
    listen = {key: value for key, value in (("host", host), ("port", port)) if value is not None}
    given = {"playbooks_dir": str(playbooks)} if playbooks is not None else {}
    settings = load_settings(config, guards={"mode": mode}, store={"url": url}, api=listen, **given)
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
    )
    api = ServerThread(app_, sock).start()
    typer.echo(
        f"healer demo: scenario {chosen.name!r} at {speed:g}x "
        f"(simulated time starts {chosen.start:%Y-%m-%d %H:%M} UTC)"
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
) -> None:
    """Score one series online: each row's score uses that row and the rows before it."""
    from healer.detect.csvscore import score_csv as run

    series = run(source, target, detector=detector)
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
) -> None:
    """Train the learned diagnoser on the simulator's ground truth; point
    ``diagnosis_model`` at the file to use it."""
    from collections import Counter

    from healer.diagnose.learned import LearnedDiagnoser
    from healer.groundtruth import examples_from_scenarios
    from healer.logs import configure

    configure(level="warning")
    names = [name.strip() for name in scenarios.split(",") if name.strip()]
    examples = examples_from_scenarios(
        names, hours=hours, playbooks_dir=playbooks_dir, seeds=range(seeds)
    )
    card = LearnedDiagnoser().fit(examples).save(out)
    counts = Counter(str(e.cause) for e in examples)
    typer.echo(f"{len(examples)} labelled diagnoses {dict(counts)} -> {out} ({card.name})")


def main() -> None:
    try:
        app()
    except HealerError as exc:
        typer.echo(f"healer: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C before a command installed its own handler
        sys.exit(130)


if __name__ == "__main__":
    main()

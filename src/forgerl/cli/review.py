"""`forgerl review ...` and `forgerl rm ...`, mounted by cli/main.py; the review app, the labels
and the reward model are forgerl/review (the synthetic demo data: review/demo.py).

Heavy imports (fastapi, uvicorn, torch, transformers) are function-local so `forgerl --help`
stays fast.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import NoReturn

import typer

from forgerl.cli.errors import add_hint
from forgerl.errors import ConfigError

review_app = typer.Typer(help="Expert review web app: browse trajectories, label them, compare A/B.",
                         invoke_without_command=True)
rm_app = typer.Typer(help="Reward model trained on expert labels (Bradley–Terry + rubric regression).",
                     no_args_is_help=True)

RUBRIC_HINT = "pass --rubric a rubric TOML (version, scale_min, scale_max, items), or leave it out for the default"
RM_HINT = ("label the run first (`forgerl review --run DIR`, or `forgerl review scripted-label`), and check "
           "--rubric and --model")

_RUN = typer.Option(..., "--run", help="run directory (holds store.sqlite) or a .sqlite file")
_RUBRIC = typer.Option(None, "--rubric", help="rubric TOML (version, scale_min, scale_max, items); "
                                              "default: the built-in forgerl-default-v1")


def _fail(message: str, hint: str) -> NoReturn:
    """A user's mistake in these commands: raised, so cli/errors.py prints it (error + hint, exit 2)."""
    raise ConfigError(message, hint=hint)


def _user_error(exc: ValueError, hint: str) -> ConfigError:
    """A ValueError from the labels, rubric or model code as a user's mistake with `hint` (kept as
    the cause, so --debug shows where it came from)."""
    if isinstance(exc, ConfigError):
        return add_hint(exc, hint)  # type: ignore[return-value]
    error = ConfigError(str(exc), hint=hint)
    error.__cause__ = exc
    return error


def _existing_store(run: Path) -> Path:
    from forgerl.store import STORE_FILENAME, StoreError  # heavy: forgerl.store, kept out of forgerl --help

    path = run / STORE_FILENAME if run.is_dir() else run
    if not path.is_file():
        raise StoreError(f"no store at {run}: expected a run directory containing {STORE_FILENAME}",
                         hint="pass --run a run directory made by `forgerl train` or `forgerl review demo`")
    return path


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@review_app.callback()
def review(ctx: typer.Context,
           run: Path = typer.Option(None, "--run", help="run directory (holds store.sqlite) to review"),
           host: str = typer.Option("127.0.0.1", help="address to bind; loopback only unless --allow-remote"),
           port: int = typer.Option(8765, help="port"),
           rubric: Path = _RUBRIC,
           rm: Path = typer.Option(None, "--rm", help="a trained reward model: its scores feed the label queue"),
           session_hours: float = typer.Option(8.0, help="sessions expire this many hours after sign-in"),
           allow_remote: bool = typer.Option(False, help="allow binding a non-loopback address (needs TLS: "
                                                         "--ssl-certfile/--ssl-keyfile or --behind-tls-proxy)"),
           ssl_certfile: Path = typer.Option(None, "--ssl-certfile", help="serve HTTPS with this certificate (PEM)"),
           ssl_keyfile: Path = typer.Option(None, "--ssl-keyfile", help="the certificate's private key (PEM)"),
           behind_tls_proxy: bool = typer.Option(False, "--behind-tls-proxy",
                                                 help="a reverse proxy terminates HTTPS in front of the app: "
                                                      "cookies are marked Secure, X-Forwarded-For is trusted from "
                                                      "the addresses in FORWARDED_ALLOW_IPS (default 127.0.0.1)"),
           ) -> None:
    """Serve the review app for a run: `forgerl review --run DIR` (then open http://127.0.0.1:8765)."""
    if ctx.invoked_subcommand is not None:
        return
    if run is None:
        raise typer.BadParameter("pass --run DIR (the run directory to review)", ctx=ctx, param_hint="--run")
    tls_files = _tls_files(ssl_certfile, ssl_keyfile)
    if not _is_loopback(host):
        if not allow_remote:
            _fail(f"{host} is not a loopback address; the app shows model output and labels to anyone who can "
                  "reach it", "bind 127.0.0.1, or pass --allow-remote (with TLS) if you mean it")
        if tls_files is None and not behind_tls_proxy:
            _fail(f"serving on {host} without TLS would send passwords and session cookies in clear text",
                  "pass --ssl-certfile CERT.pem --ssl-keyfile KEY.pem, or --behind-tls-proxy if a reverse proxy "
                  "terminates HTTPS in front of the app")
    import uvicorn

    from forgerl.review.app import create_app  # heavy: forgerl.review.app (fastapi, jinja2), kept out of forgerl --help
    from forgerl.review.rubric import load_rubric  # heavy: forgerl.review, kept out of forgerl --help

    store_path = _existing_store(run)
    try:
        rubric_config = load_rubric(rubric)
    except ValueError as exc:
        raise ConfigError(str(exc), hint=RUBRIC_HINT) from exc
    rm_scores = _rm_scores(store_path, rm) if rm is not None else None
    secure = tls_files is not None or behind_tls_proxy
    app = create_app(store_path, rubric=rubric_config, session_ttl_s=session_hours * 3600, rm_scores=rm_scores,
                     secure_cookies=secure)
    scheme = "https" if tls_files is not None else "http"
    typer.echo(f"reviewing {store_path} on {scheme}://{host}:{port}  (rubric {rubric_config.version})"
               + ("  behind a TLS proxy" if behind_tls_proxy else ""))
    certfile, keyfile = tls_files if tls_files is not None else (None, None)
    uvicorn.run(app, host=host, port=port, log_level="warning", ssl_certfile=certfile, ssl_keyfile=keyfile,
                proxy_headers=behind_tls_proxy)


def _tls_files(certfile: Path | None, keyfile: Path | None) -> tuple[str, str] | None:
    """Both TLS files as strings, None when neither is given; one without the other, or a missing
    file, is refused here rather than by uvicorn's traceback."""
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        _fail("HTTPS needs both --ssl-certfile and --ssl-keyfile", "pass the PEM certificate and its private key")
    for what, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if not path.is_file():
            _fail(f"{what} {path} is not a file", "pass the paths of the PEM certificate and its private key")
    return str(certfile), str(keyfile)


def _rm_scores(store_path: Path, rm_dir: Path) -> dict[str, float]:
    from forgerl.review.rm import RewardModel  # heavy: forgerl.review, kept out of forgerl --help
    from forgerl.store import TrajectoryStore  # heavy: forgerl.store, kept out of forgerl --help

    model = RewardModel.load(rm_dir)
    with TrajectoryStore(store_path) as store:
        trajectories = store.query()
    return dict(zip([t.id for t in trajectories], model.score(trajectories), strict=True))


@review_app.command("add-expert")
def add_expert(name: str = typer.Argument(..., help="the expert's sign-in name"), run: Path = _RUN,
               password_stdin: bool = typer.Option(False, help="read the password from stdin (for scripts)"),
               reset: bool = typer.Option(False, help="set a new password for an existing expert")) -> None:
    """Create an expert account in the run's store (the password is stored as an argon2id hash)."""
    from forgerl.review.auth import hash_password  # heavy: forgerl.review, kept out of forgerl --help
    from forgerl.store import (  # heavy: forgerl.store, kept out of forgerl --help
        StoreError,
        TrajectoryStore,
        UnknownRecordError,
    )

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        hashed = hash_password(password)
    except ValueError as exc:
        raise ConfigError(str(exc), hint="choose a longer password") from exc
    with TrajectoryStore(_existing_store(run)) as store:
        try:
            if reset:
                store.set_expert_password(name, hashed)
            else:
                store.add_expert(name, hashed)
        except (StoreError, UnknownRecordError) as exc:
            raise add_hint(exc, "pass --reset to set a new password for an existing expert, or leave it out "
                                "to create a new one") from None
    typer.echo(f"expert {name!r} {'updated' if reset else 'created'}")


@review_app.command("demo")
def demo(run: Path = typer.Option(..., "--run", help="run directory to create or add to"),
         tasks: int = typer.Option(12, min=1), rollouts: int = typer.Option(4, min=2),
         seed: int = typer.Option(0), label: bool = typer.Option(False, help="also label with the scripted expert"),
         malicious: bool = typer.Option(False, help="add the XSS test trajectory")) -> None:
    """Store a synthetic run (ops tasks, a known scripted expert; see forgerl.review.demo)."""
    from forgerl.review.demo import (  # heavy: forgerl.review, kept out of forgerl --help
        label_with_scripted_expert,
        make_demo_run,
    )
    from forgerl.store import StoreError, TrajectoryStore  # heavy: forgerl.store, kept out of forgerl --help

    with TrajectoryStore(run) as store:
        try:
            trajs = make_demo_run(store, n_tasks=tasks, rollouts=rollouts, seed=seed, run_id=f"demo-{seed}",
                                  with_malicious=malicious)
        except StoreError as exc:
            raise add_hint(exc, "use a fresh --run directory or another --seed") from None
        typer.echo(f"stored {len(trajs)} trajectories in run demo-{seed} at {store.path}")
        if label:
            n_rubric, n_pref = label_with_scripted_expert(store, trajs, seed=seed)
            typer.echo(f"scripted expert: {n_rubric} rubric labels, {n_pref} preferences")


@review_app.command("scripted-label")
def scripted_label(run: Path = _RUN, seed: int = typer.Option(0, help="seeds the rubric-score noise")) -> None:
    """Label every trajectory of a tool-reasoning run with the scripted grounding expert (prefers
    episodes that did the task through parsed tool calls, then tool calls without invented numbers,
    then the verified answer; see forgerl.review.tool_expert)."""
    from forgerl.review.tool_expert import (  # heavy: forgerl.review, kept out of forgerl --help
        TOOL_EXPERT,
        grounded_fraction,
        label_with_tool_expert,
    )
    from forgerl.store import TrajectoryStore  # heavy: forgerl.store, kept out of forgerl --help

    with TrajectoryStore(_existing_store(run)) as store:
        trajectories = store.query()
        if store.labels(expert=TOOL_EXPERT):
            _fail(f"{run} already holds labels by {TOOL_EXPERT}", "label a fresh run")
        n_rubric, n_pref = label_with_tool_expert(store, trajectories, seed=seed)
    typer.echo(f"{TOOL_EXPERT}: {n_rubric} rubric labels, {n_pref} preferences; "
               f"{grounded_fraction(trajectories):.2f} of the trajectories are grounded")


@rm_app.command("train")
def rm_train(run: Path = _RUN, out: Path = typer.Option(None, help="where to save (default RUN/reward_model)"),
             rubric: Path = _RUBRIC, encoder: str = typer.Option("all-MiniLM-L6-v2", help="encoder name or HF dir"),
             holdout: float = typer.Option(0.25, help="fraction of tasks held out for evaluation"),
             epochs: int = typer.Option(None), hidden: int = typer.Option(None), seed: int = typer.Option(0),
             process_features: bool = typer.Option(True, "--process-features/--text-only",
                                                   help="add the process statistics (forgerl.review.features) "
                                                        "to the text embeddings")) -> None:
    """Train the reward model on the run's labels; print train and held-out accuracy and calibration."""
    from forgerl.review.rm import (  # heavy: forgerl.review, kept out of forgerl --help
        RewardModelConfig,
        load_label_data,
        result_dict,
        train_reward_model,
    )
    from forgerl.review.rubric import load_rubric  # heavy: forgerl.review, kept out of forgerl --help
    from forgerl.store import TrajectoryStore  # heavy: forgerl.store, kept out of forgerl --help

    store_path = _existing_store(run)
    try:
        rubric_config = load_rubric(rubric)
        overrides = {k: v for k, v in {"epochs": epochs, "hidden": hidden}.items() if v is not None}
        config = RewardModelConfig(encoder=encoder, holdout=holdout, seed=seed, process_features=process_features,
                                   **overrides)
        with TrajectoryStore(store_path) as store:
            data = load_label_data(store, rubric_config)
        model, result = train_reward_model(data, config, rubric_version=rubric_config.version)
    except ValueError as exc:
        raise _user_error(exc, RM_HINT) from None
    target = out or store_path.parent / "reward_model"
    model.save(target, result_dict(result))
    typer.echo(f"tasks: {result.n_train_tasks} train, {result.n_held_out_tasks} held out")
    for name, ev in (("train", result.train), ("held-out", result.held_out)):
        typer.echo(f"[{name}]")
        for line in ev.lines():
            typer.echo(f"  {line}")
    typer.echo(f"saved to {target}")


@rm_app.command("eval")
def rm_eval(run: Path = _RUN, model: Path = typer.Option(..., "--model", help="a directory from `forgerl rm train`"),
            rubric: Path = _RUBRIC) -> None:
    """Evaluate a trained reward model on every current label of a run (use a run it was not trained on,
    or the held-out figures of `rm train`)."""
    from forgerl.review.rm import (  # heavy: forgerl.review, kept out of forgerl --help
        RewardModel,
        evaluate,
        load_label_data,
    )
    from forgerl.review.rubric import load_rubric  # heavy: forgerl.review, kept out of forgerl --help
    from forgerl.store import TrajectoryStore  # heavy: forgerl.store, kept out of forgerl --help

    try:
        rubric_config = load_rubric(rubric)
        rm = RewardModel.load(model)
        with TrajectoryStore(_existing_store(run)) as store:
            data = load_label_data(store, rubric_config)
    except ValueError as exc:
        raise _user_error(exc, RM_HINT) from None
    ids = sorted(data.texts)
    scores = dict(zip(ids, rm.raw_scores([data.texts[i] for i in ids]), strict=True))
    for line in evaluate(scores, data, data.preferences, list(data.ratings)).lines():
        typer.echo(line)

"""`advcritic quickstart`: the whole job on the embedded defaults, in one command.

    mnist-5k ─► train (cpu preset) ─► stimulus bundle (+ catch trials) ─► figures
             ─► SQLite study (migrate, import) ─► labeling server with a lab link to open

Each step is the same command a user would type (`advcritic train`, `advcritic stimuli`,
`advcritic figures`, `study-server migrate|import|serve`), run in this process with the
arguments printed, so the quickstart is also a worked example of the pipeline. Every step
skips work already done (a finished run, a verified bundle, an imported study), so running
it again after an interruption continues where it stopped.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from contract.cli import UsageError

if TYPE_CHECKING:
    from study_server.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quickstart",
        help="train, attack, build the study and serve the labeling page (embedded defaults)",
        description="Run the whole pipeline on mnist-5k, on the CPU, with a SQLite study database, "
        "and end with the labeling server running and a link a person can open.",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("quickstart"),
        help="folder for the run, bundle, figures and database (default ./quickstart)",
    )
    parser.add_argument(
        "--defense", default="ours", help="reference | at | vat | mm | ours (default ours)"
    )
    parser.add_argument("--net", default="fc", help="fc | lenet5 (default fc)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the cpu preset's)")
    parser.add_argument("--train-limit", type=int, help="train on a fixed subset of N images")
    parser.add_argument(
        "--limit", type=int, help="attack only the first N test images (default all)"
    )
    parser.add_argument(
        "--catch", type=int, default=50, help="clean catch trials in the study (default 50)"
    )
    parser.add_argument("--no-figures", action="store_true", help="skip Figures 2 and 4")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: PyTorch's)")
    parser.add_argument(
        "--database-url", help="study database (default sqlite:///WORKDIR/study.db)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000)")
    parser.add_argument("--no-serve", action="store_true", help="stop after importing the study")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


class StepFailed(Exception):
    def __init__(self, step: str, code: int) -> None:
        super().__init__(f"step {step!r} failed with exit status {code}")
        self.code = code


def _step(title: str, entry: Callable[[Sequence[str]], int], prog: str, argv: list[str]) -> None:
    print(f"\n==> {title}\n    {prog} {' '.join(argv)}", flush=True)
    code = entry(argv)
    if code:
        raise StepFailed(title, code)


def _bundle_is_valid(path: Path) -> bool:
    from contract.bundle import BundleError, read_bundle

    try:
        read_bundle(path)
    except BundleError:
        return False
    return True


def _validate(args: argparse.Namespace) -> None:
    for flag, value, low in (
        ("--epochs", args.epochs, 1),
        ("--train-limit", args.train_limit, 1),
        ("--limit", args.limit, 1),
        ("--catch", args.catch, 0),
        ("--threads", args.threads, 1),
        ("--port", args.port, 1),
    ):
        if value is not None and value < low:
            raise UsageError(f"{flag} must be at least {low}, got {value}")
    if args.port > 65535:
        raise UsageError(f"--port must be at most 65535, got {args.port}")


def _invite(settings: Settings, database_url: str, slug: str) -> str:
    """One lab invitation (the lab mode takes no other code), as `study-server invite` makes."""
    from study_server.db.access import study_sessions
    from study_server.invitations import mint
    from study_server.links import lab_invitation_url

    print(
        f"\n==> 4/5 (a lab invitation for you)\n    study-server invite {slug} --n 1 "
        f"--database-url {database_url}",
        flush=True,
    )
    with study_sessions(database_url) as sessions, sessions() as session:
        (code,) = mint(session, study_slug=slug, n=1, note="quickstart")
    return lab_invitation_url(settings, slug, code)


def _admin_token(workdir: Path) -> str:
    """The dashboard's sign-in token: ADVCRITIC_ADMIN_TOKEN if set, else one made once and
    kept in WORKDIR/admin-token (readable by its owner only), so the served app has one.
    Says where the token is."""
    if os.environ.get("ADVCRITIC_ADMIN_TOKEN"):
        return "your ADVCRITIC_ADMIN_TOKEN"
    path = workdir / "admin-token"
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    os.environ["ADVCRITIC_ADMIN_TOKEN"] = path.read_text().strip()
    return f"the admin token in {path}"


def run(args: argparse.Namespace) -> int:
    from model.cli import main as advcritic
    from model.training import CHECKPOINT_FILE
    from study_server.cli import DASHBOARD_APP
    from study_server.cli import main as study_server
    from study_server.settings import get_settings

    _validate(args)
    workdir: Path = args.workdir
    token_where = _admin_token(workdir)
    get_settings.cache_clear()  # the token is part of the settings from here on
    name = f"{args.defense}-{args.net}-s{args.seed}"
    run_dir, bundle, figures = (
        workdir / "runs" / name,
        workdir / "stimuli" / name,
        workdir / "figures" / name,
    )
    database_url = args.database_url or f"sqlite:///{(workdir / 'study.db').resolve()}"
    public_url = f"http://{args.host}:{args.port}"
    common = ["--threads", str(args.threads)] if args.threads is not None else []
    quiet = ["--no-progress"] if args.no_progress else []
    try:
        train = [
            "train",
            "--defense",
            args.defense,
            "--net",
            args.net,
            "--preset",
            "cpu",
            "--seed",
            str(args.seed),
            "--out",
            str(run_dir),
            "--resume",
            *common,
            *quiet,
        ]
        train += ["--epochs", str(args.epochs)] if args.epochs else []
        train += ["--train-limit", str(args.train_limit)] if args.train_limit else []
        _step("1/5 train the classifier", advcritic, "advcritic", train)
        checkpoint = str(run_dir / CHECKPOINT_FILE)

        if _bundle_is_valid(bundle):
            print(f"\n==> 2/5 stimuli: {bundle} is already a verified bundle; kept")
        else:
            stimuli = [
                "stimuli",
                "--checkpoint",
                checkpoint,
                "--out",
                str(bundle),
                "--overwrite",
                "--catch",
                str(args.catch),
                *common,
                *quiet,
            ]
            stimuli += ["--limit", str(args.limit)] if args.limit else []
            _step("2/5 attack the test set into a stimulus bundle", advcritic, "advcritic", stimuli)

        if args.no_figures or (figures / "figure2.png").exists():
            print(
                "\n==> 3/5 figures: skipped" + ("" if args.no_figures else f" ({figures} exists)")
            )
        else:
            _step(
                "3/5 draw Figures 2 and 4",
                advcritic,
                "advcritic",
                ["figures", "--checkpoint", checkpoint, "--out", str(figures), *common],
            )

        database = ["--database-url", database_url, "--public-url", public_url]
        _step(
            "4/5 create the study database and import the bundle",
            study_server,
            "study-server",
            ["migrate", *database],
        )
        _step(
            "4/5 (import)",
            study_server,
            "study-server",
            ["import", str(bundle), "--slug", name, *database],
        )
        if args.no_serve:
            print(f"\nDone. Serve it with: study-server serve --database-url {database_url}")
            return 0
        settings = get_settings().model_copy(update={"public_url": public_url})
        link = _invite(settings, database_url, name)
        print(f"\n*** Open {link} in a browser to label the study. ***", flush=True)
        print(
            f"    The live dashboard: {public_url}/dashboard (sign in with {token_where})",
            flush=True,
        )
        _step(
            "5/5 serve the labeling page and the dashboard (Ctrl-C to stop)",
            study_server,
            "study-server",
            [
                "serve", *database, "--host", args.host, "--port", str(args.port),
                "--app", DASHBOARD_APP,
            ],
        )  # fmt: skip
    except StepFailed as failure:
        print(f"advcritic quickstart: {failure}")
        return failure.code
    return 0

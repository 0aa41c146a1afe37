"""`hgf get` and `hgf artifacts ...`: fetch files and models, and manage the artifact store."""

from __future__ import annotations

import argparse

from bridge.artifacts import ArtifactStore
from bridge.artifacts.names import canonical_name
from bridge.cli.terminal import printable
from bridge.errors import SpecError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `get` and `artifacts` to the `hgf` command line."""
    get = subparsers.add_parser(
        "get",
        help="fetch a config/tokenizer/model, or files of a repo, into the artifact store",
        description="Look up SPEC ('<repo_id>[@<revision>][:<item>]' or '<dir>[:<item>]') as hgf() does, "
        "downloading and registering what it needs; with FILEs, fetch those files of the repo "
        "'<repo_id>[@<revision>]' and print their paths. Once fetched, everything works offline.",
    )
    get.add_argument("spec", metavar="SPEC")
    get.add_argument("files", metavar="FILE", nargs="*", help="files of the repo to fetch")
    get.set_defaults(run=run_get)

    artifacts = subparsers.add_parser(
        "artifacts",
        help="list, verify, clean and edit the artifact store",
        description="The artifact store ($HGF_BRIDGE_HOME, else $XDG_CACHE_HOME/hgf-bridge): "
        "Artifacts.toml and artifacts/<git-tree-sha1>/, as Julia's Artifacts reads them.",
    )
    actions = artifacts.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="the bound names, their tree hashes, sizes and paths").set_defaults(run=run_list)
    actions.add_parser("verify", help="re-hash every artifact; exit 1 if any is corrupt").set_defaults(
        run=run_verify
    )
    gc = actions.add_parser("gc", help="delete artifacts and blobs no name binds")
    gc.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    gc.set_defaults(run=run_gc)
    register_file = actions.add_parser("register", help="register a local file under NAME")
    register_file.add_argument("path", metavar="PATH")
    register_file.add_argument("name", metavar="NAME")
    register_file.set_defaults(run=run_register)
    remove = actions.add_parser("remove", help="unbind NAME (its bytes go at the next gc)")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(run=run_remove)


def run_get(args: argparse.Namespace) -> int:
    from bridge.hgf import CONFIG_ITEM, hgf, parse_spec
    from bridge.hub import fetch_file

    spec = parse_spec(args.spec)
    if not args.files:
        result = hgf(args.spec)
        if spec.item == CONFIG_ITEM:
            print(result)
        else:
            parts = result if isinstance(result, tuple) else (result,)  # no item: (tokenizer, model)
            print(f"{args.spec}: " + " and ".join(_describe(part) for part in parts))
        return 0
    if spec.item is not None:
        raise SpecError(f"with FILEs, SPEC is '<repo_id>[@<revision>]' without an item, not {args.spec!r}")
    for filename in args.files:
        print(printable(str(fetch_file(spec.source, filename, revision=spec.revision))))
    return 0


def run_list(args: argparse.Namespace) -> int:
    store = ArtifactStore()
    store.check_layout()
    table = store.manifest.read()
    for name, entry in sorted(table.items()):
        directory = store.artifacts_dir / entry["git-tree-sha1"]
        print(f"{printable(name)}\t{entry['git-tree-sha1']}\t{entry.get('size', '?')}\t{printable(str(directory))}")
    if not table:
        print(f"no artifacts in {printable(str(store.root))} (register one with `hgf get` or `hgf artifacts register`)")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    store = ArtifactStore()
    problems = store.verify()
    for problem in problems:
        print(f"{printable(problem.name)}: {printable(problem.reason)} ({printable(str(problem.path))})")
    if not problems:
        print(f"all {len(store.names())} artifacts intact in {printable(str(store.root))}")
    return 1 if problems else 0


def run_gc(args: argparse.Namespace) -> int:
    paths = ArtifactStore().gc(dry_run=args.dry_run)
    for path in paths:
        print(f"{'would remove' if args.dry_run else 'removed'} {printable(str(path))}")
    if not paths:
        print("nothing to remove")
    return 0


def run_register(args: argparse.Namespace) -> int:
    print(ArtifactStore().register_file(args.path, args.name))
    return 0


def run_remove(args: argparse.Namespace) -> int:
    store = ArtifactStore()
    store.remove(args.name)
    print(
        f"removed {printable(canonical_name(args.name))} from {printable(str(store.manifest.path))}; "
        "its bytes go at the next `hgf artifacts gc`"
    )
    return 0


def _describe(loaded: object) -> str:
    """One line for what `hgf get` built: a model's class and size, a tokenizer's class and vocabulary."""
    name = type(loaded).__name__
    if hasattr(loaded, "parameters"):
        parameters = sum(parameter.numel() for parameter in loaded.parameters())
        return f"{name} ({parameters:,} parameters, {loaded.dtype})"
    if hasattr(loaded, "vocab_size"):
        return f"{name} (vocabulary of {loaded.vocab_size:,})"
    return name

"""``lit-gpt5 data``: token stores built (or extended) from books, text files, JSONL and Parquet, and described.

    lit-gpt5 data build --out store/ --book_ids 829 1342 84
    lit-gpt5 data build --out store/ --text_paths my_book.txt --folders texts/ --jsonl corpus.jsonl
    lit-gpt5 data info store/
    lit-gpt5 data verify store/          # every shard's sha256 against the manifest (training checks each once)

How a build works (resumable, one at a time, sources checked for change): ``lit_gpt5.data.store_build``.
"""

from __future__ import annotations

import os
import sys

from lit_gpt5.commands.arguments import CommandParser
from lit_gpt5.data.store import TokenStore
from lit_gpt5.data.store_build import build, sources
from lit_gpt5.errors import UserError


def info(path: str | os.PathLike) -> str:
    """What a store holds, per source: documents and tokens (an unfinished store says so)."""
    store = TokenStore(path, allow_unfinished=True)
    by_source: dict[str, list[int]] = {}
    for doc in store.documents:
        by_source.setdefault(doc.source, []).append(doc.length)
    lines = [f"{store.path}: {len(store.documents)} documents, {sum(sum(v) for v in by_source.values()):,} tokens in "
             f"{len(store.manifest['shards'])} shards ({store.manifest['tokenizer']}, {store.dtype})"
             + ("" if store.complete else "; NOT FINISHED: run the same lit-gpt5 data build again")]  # fmt: skip
    lines += [f"  {name}: {len(v)} documents, {sum(v):,} tokens" for name, v in sorted(by_source.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(prog="lit-gpt5 data", description="Token stores: build one, or look inside one.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    build_p = sub.add_parser("build", help="tokenize documents into a store (or add new ones to it)")
    build_p.add_argument("--out", required=True, help="the store's folder (created if missing)")
    build_p.add_argument("--book_ids", type=int, nargs="*", default=[], help="Project Gutenberg book ids")
    build_p.add_argument("--text_paths", nargs="*", default=[], help="text files (UTF-8)")
    build_p.add_argument("--folders", nargs="*", default=[], help="folders of *.txt files (one source each)")
    build_p.add_argument("--jsonl", nargs="*", default=[], help="JSONL files, one document per line")
    build_p.add_argument("--parquet", nargs="*", default=[], help="Parquet files, one document per row")
    build_p.add_argument("--text_field", default="text", help="the JSONL field / Parquet column holding the text")
    build_p.add_argument("--cache_dir", default=None, help="where Gutenberg downloads are cached")
    build_p.add_argument("--workers", type=int, default=None, help="tokenizer threads (default: every core)")
    build_p.add_argument("--shard_tokens", type=int, default=64 * 2**20, help="tokens per shard")
    info_p = sub.add_parser("info", help="what a store holds")
    info_p.add_argument("store")
    verify_p = sub.add_parser("verify", help="check every shard's sha256 against the manifest")
    verify_p.add_argument("store")
    args = parser.parse_args(argv)
    if args.command == "info":
        print(info(args.store))
        return
    if args.command == "verify":
        store = TokenStore(args.store, allow_unfinished=True)
        read, seconds = store.verify(again=True)
        print(f"{store.path}: {len(store.manifest['shards'])} shards match the manifest ({read / 2**20:,.0f} MiB "
              f"read in {seconds:.1f} s)")  # fmt: skip
        return
    if not (args.book_ids or args.text_paths or args.folders or args.jsonl or args.parquet):
        raise UserError("nothing to build from: give --book_ids, --text_paths, --folders, --jsonl or --parquet")
    if args.shard_tokens <= 0 or (args.workers is not None and args.workers <= 0):
        raise UserError("--shard_tokens and --workers must be positive")
    docs = sources(args.book_ids, args.text_paths, args.folders, args.jsonl, args.parquet, args.text_field,
                   args.cache_dir)  # fmt: skip
    build(args.out, docs, args.workers, args.shard_tokens, progress=sys.stderr.isatty())
    print(info(args.out))


if __name__ == "__main__":
    from lit_gpt5.errors import run_main

    run_main(main)

#!/usr/bin/env python3
"""Print the path of a binary cargo just built, read from its JSON messages on stdin.

    cargo test --all-targets --no-run --message-format=json-render-diagnostics | scripts/cargo-bin.py pulse

Used by `make test-python`: the Python tests run the binary `cargo test` builds, wherever the target
directory is. Fails (exit 1, one line) when the build failed or did not produce that binary.
"""

import json
import sys


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit("usage: cargo-bin.py BINARY-NAME < cargo JSON messages")
    name, path, success = sys.argv[1], None, None
    for line in sys.stdin:
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        if message.get("reason") == "build-finished":
            success = message["success"]
        elif (message.get("reason") == "compiler-artifact" and message["target"]["name"] == name
              and "bin" in message["target"]["kind"] and not message["profile"]["test"]):
            path = message["executable"]
    if not success:
        print("cargo-bin.py: the cargo build failed (see its messages above)", file=sys.stderr)
        return 1
    if not path:
        print(f"cargo-bin.py: cargo built no binary named {name!r}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

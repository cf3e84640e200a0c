"""The BentoML adapter's console: what ``bentoml build --output tag`` prints is read back."""

from __future__ import annotations

import subprocess
import sys


def test_a_tag_named_like_an_emoji_code_is_printed_as_it_is() -> None:
    # BentoML prints the new tag with rich.print; rich turns ":cancer:" into an emoji
    script = (
        "import sys, rich\n"
        "if sys.argv[1] == 'plain':\n"
        "    from nb2prod.adapters.bento_main import plain_console\n"
        "    plain_console()\n"
        "rich.print('__tag__:cancer:zrl5nuxn5sgniax4')\n"
    )
    run = [sys.executable, "-c", script]
    rich_default = subprocess.run([*run, "rich"], capture_output=True, text=True, check=True)
    assert rich_default.stdout.strip() != "__tag__:cancer:zrl5nuxn5sgniax4"  # what went wrong
    plain = subprocess.run([*run, "plain"], capture_output=True, text=True, check=True)
    assert plain.stdout.strip() == "__tag__:cancer:zrl5nuxn5sgniax4"

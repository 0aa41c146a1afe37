"""What the CLI prints comes from files and servers: names are escaped so each prints as one inert line."""


def printable(text: str) -> str:
    """`text` with every non-printable character (ESC, newline, bidi overrides, ...) escaped
    as \\xNN / \\uNNNN, so a name from a file cannot move the cursor or fake a line of output."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)

"""seqgen corpus: the built-in corpora."""

from __future__ import annotations

import typer

from seqgen.cli._util import out

app = typer.Typer(help="Built-in corpora.", no_args_is_help=True)


@app.command("list")
def list_corpora() -> None:
    """List the built-in corpora, what they hold and on what terms."""
    from rich.table import Table

    from seqgen.data.sources import BUILTIN

    table = Table(show_lines=False)
    table.add_column("name", style="bold")
    table.add_column("kind")
    table.add_column("what it is")
    table.add_column("terms")
    for c in BUILTIN.values():
        table.add_row(c.name, c.kind, c.description, c.terms)
    out.print(table)

"""Baseline for --help: a bare Typer app with 20 commands."""

import typer

app = typer.Typer()


def _make(name: str):
    def command(predictions: str, targets: str) -> None:
        """Compute a loss."""
        typer.echo(f"{name} {predictions} {targets}")

    command.__name__ = name
    return command


for index in range(20):
    app.command(f"loss{index}")(_make(f"loss{index}"))

if __name__ == "__main__":
    app()

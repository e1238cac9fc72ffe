"""Where an mlserve process starts: the `mlserve` console script and `python -m mlserve`."""

from mlserve import interrupt


def main() -> None:
    interrupt.install()  # first: a Ctrl-C while the CLI's modules load ends the process at once
    from mlserve.cli import main as run

    run()


if __name__ == "__main__":
    main()

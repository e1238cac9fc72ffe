import sys

try:
    from mlserve.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python is still importing
    sys.stderr.write("error: interrupted\n")
    sys.exit(130)

main()

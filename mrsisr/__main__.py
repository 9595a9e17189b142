"""`python -m mrsisr` runs the command line."""

from mrsisr.cli import main

if __name__ == "__main__":
    main()

from lit_gpt5.cli import main
from lit_gpt5.errors import run_main

run_main(main)

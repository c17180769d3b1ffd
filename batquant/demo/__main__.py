"""``python -m batquant.demo``: calibrate the embedded tiny Qwen3 with six methods, print PPL."""

from batquant.demo import format_rows, run_demo

rows = run_demo()
print(
    "\nheld-out perplexity of the embedded tiny Qwen3 (pydoc topics it never saw), W4A4KV16, "
    "windows of 256 tokens"
)
print(format_rows(rows))

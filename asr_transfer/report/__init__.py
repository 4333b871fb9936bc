"""The run report: ``python report.py run_dir=<run or sweep dir>`` -> one self-contained HTML file.

``rundir`` reads the run-directory contract, ``figures`` draws with matplotlib, ``media`` embeds
images and audio as data URIs, ``align`` diffs CTC transcripts, ``render`` fills the Jinja2 templates.
"""

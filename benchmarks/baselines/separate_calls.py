"""What a shell loop does without batch: one losscli process per job of a jobs file."""

import json
import subprocess
import sys

with open(sys.argv[1]) as jobs:
    for line in jobs:
        job = json.loads(line)
        options = []
        for name, value in job.get("options", {}).items():
            options += [f"--{name.replace('_', '-')}", str(value)]
        command = [sys.executable, "-m", "losscli", job["loss"], *job["inputs"], *options]
        subprocess.run([*command, "-f", "json"], check=True, stdout=subprocess.DEVNULL)

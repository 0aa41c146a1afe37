"""Print pip constraints pinning each dependency of pyproject.toml to its lower bound (`>=X` -> `==X`).

`make test-lowest` installs with these, so the bounds in pyproject are ones the suite has run against.
"""

import re
import sys

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

with open(sys.argv[1], "rb") as file:
    project = tomllib.load(file)["project"]
requirements = list(project["dependencies"])
for extra in ("torch", "julia", "test"):
    requirements += project["optional-dependencies"][extra]
for requirement in requirements:
    match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([^,;\s]+)", requirement)
    if match:
        print(f"{match[1]}=={match[2]}")

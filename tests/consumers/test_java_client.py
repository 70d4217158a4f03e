"""A Java team's first client, from docs/consumers.md alone, built and run against a gateway.

The page's Maven snippet (the ```xml block) goes, verbatim, into the smallest project a
team could have (coordinates, Java 11, the plugin versions Maven needs); the page's class
(the ```java block) goes where its package says. Maven compiles it against the stubs that
`make generate-java` installed and Maven Central; plain ``java`` runs it on the snippet's
runtime classpath, so a missing transport would fail the run with "No functional channel
service provider found". Run by `make doctest`, which sets GATEWAY_DOCTEST=1.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.docs.gateway_process import example_env, missing, strict
from tests.docs.markdown import section_blocks
from tests.support.paths import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not strict(), reason="builds a Maven project: `make doctest` runs it"),
]

PAGE = REPO / "docs" / "consumers.md"
STUBS_JAR = (
    Path.home()
    / ".m2/repository/com/gagiteck/gagiteck-grpc-stubs/0.1.0-SNAPSHOT"
    / "gagiteck-grpc-stubs-0.1.0-SNAPSHOT.jar"
)
SECONDS = 600

# A team's own project around the snippet; the plugin versions are tests/interop/java's.
PROJECT = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>example</groupId>
  <artifactId>agents-client</artifactId>
  <version>1.0</version>
  <properties>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
    <maven.compiler.release>11</maven.compiler.release>
  </properties>
{snippet}
  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-resources-plugin</artifactId>
          <version>3.3.1</version>
        </plugin>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-compiler-plugin</artifactId>
          <version>3.13.0</version>
        </plugin>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>3.8.1</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
"""


def _write_project(root: Path) -> str:
    """The project from the page; answers the main class's name."""
    (snippet,) = (block.text for block in section_blocks(PAGE, "Java", "xml"))
    (source,) = (block.text for block in section_blocks(PAGE, "Java", "java"))
    package = re.search(r"^package ([\w.]+);", source, re.MULTILINE)
    name = re.search(r"^public (?:final )?class (\w+)", source, re.MULTILINE)
    assert package, "the page's class names its package"
    assert name, "the page's class is public"
    (root / "pom.xml").write_text(PROJECT.format(snippet=snippet), encoding="utf-8")
    directory = root / "src" / "main" / "java" / package[1].replace(".", "/")
    directory.mkdir(parents=True)
    (directory / f"{name[1]}.java").write_text(source, encoding="utf-8")
    return f"{package[1]}.{name[1]}"


def _run(command: list[str], root: Path, env: dict[str, str]) -> str:
    ran = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=SECONDS, check=False
    )
    assert ran.returncode == 0, f"{' '.join(command)}\n{ran.stdout}\n{ran.stderr}"
    return ran.stdout


def test_java_client_from_the_docs(gateway_target: str, tmp_path: Path) -> None:
    if shutil.which("mvn") is None or shutil.which("java") is None:
        missing("Maven (mvn) and a JDK are needed")
    if not STUBS_JAR.exists():
        missing(f"{STUBS_JAR} is missing: run `make generate-java`")
    main_class = _write_project(tmp_path)
    env = example_env(gateway_target)
    classpath_file = tmp_path / "classpath.txt"
    _run(
        [
            "mvn",
            "-B",
            "-q",
            "compile",
            "dependency:build-classpath",
            "-Dmdep.includeScope=runtime",
            f"-Dmdep.outputFile={classpath_file}",
        ],
        tmp_path,
        env,
    )
    classpath = f"{tmp_path / 'target' / 'classes'}:{classpath_file.read_text().strip()}"
    assert "grpc-netty-shaded" in classpath
    out = _run(["java", "-cp", classpath, main_class], tmp_path, env)
    assert "created agent_" in out
    assert "NOT_FOUND NOT_FOUND http=404" in out

"""Packaging beyond what pyproject.toml can say: the top-level templates/ and static/ folders
become the data packages `app.templates` and `app.static` in the wheel, so an installed app
finds them through the package (app/web/resources.py), whatever the working directory."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["app", "app.*"]), "app.templates", "app.static"],
    package_dir={"app.templates": "templates", "app.static": "static"},
)

"""Function, layer and secret routes, and synchronous invocation."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("functions", __name__)

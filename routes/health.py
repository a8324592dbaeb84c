"""``GET /healthz``: is the gateway up, and does its database answer."""

from __future__ import annotations

import logging

import peewee as pw
from flask import Blueprint, jsonify

import models

logger = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    try:
        models.db.execute_sql("SELECT 1").fetchone()
    except pw.PeeweeException as exc:
        logger.warning("health check: the database does not answer: %s", exc)
        models.db.close()
        return jsonify({"status": "error", "database": "unavailable"}), 503
    return jsonify({"status": "ok", "database": "ok"})

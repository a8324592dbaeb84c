import os


def handler(event, context):
    return dict(os.environ)

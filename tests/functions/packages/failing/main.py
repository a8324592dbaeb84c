def handler(event, context):
    print("about to look up 'x'")
    return event["x"]

def handle(event, context):
    """Answer every request; replace with your function."""
    return {"statusCode": 200, "body": {"hello": context.hostname, "path": event.path}}

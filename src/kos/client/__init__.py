"""Client machinery (the client-go equivalent): REST client, reflector, informer, work queue."""

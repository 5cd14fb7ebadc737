"""Kafka infrastructure: the embedded KRaft broker, topics, the JVM launcher and process control."""

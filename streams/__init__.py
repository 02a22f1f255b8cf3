"""streams: the Kafka side of agentstream. Depends on :mod:`schemas` only.

Import from the modules; this package re-exports nothing, so that importing
``streams.settings`` (the CLI parser does) does not load aiokafka. The map::

    settings     KafkaSettings          where Kafka is and how to reach it, from AGENTSTREAM_*
    security     KafkaSecurity          TLS and SASL settings of every client; login errors
    acls         plan_acls ...          least-privilege ACLs per role, kafka-acls form, apply
    catalogue    Catalogue, TopicSpec   topic names, partitions, retention (spelled only here)
    clients      new_producer, ...      every Kafka client the product builds
    partitioner  murmur2, ...           Java's default partitioner, bit for bit
    producer     Producer, ...          idempotent, batched, keyed producer; its settings
    consumer     tail, end_offsets ...  read_committed consumers, offset helpers, decoded tailing
    admin        ensure_topics ...      create, describe and compare topics against the catalogue
    jsonlines    validate_lines ...     validate a JSON-lines file before anything is sent
    dlq          dead_letter ...        DLQ records with origin and error headers
    lag          LagGauge, ...          consumer lag per group and partition, as components see it
    offsets      plan_targets, ...      kafka-consumer-groups' reset kinds, group offsets, members
    tuning       ...                    aiokafka knobs the engine's transactions need
    errors       StreamsError ...       the streams layer's part of the error tree
"""

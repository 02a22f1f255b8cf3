"""streams: the Kafka side of agentstream.

Depends on :mod:`schemas` only. The pieces::

    settings    KafkaSettings           where Kafka is, from AGENTSTREAM_* variables
    catalogue   Catalogue, TopicSpec    topic names, partitions, retention (spelled only here)
    partitioner murmur2 ...             Java's default partitioner, bit for bit
    producer    Producer, ...           idempotent, batched, keyed producer; transactional factory
    consumer    tail, end_offsets ...   read_committed consumers, offset helpers, decoded tailing
    admin       ensure_topics ...       create, describe and compare topics against the catalogue
    jsonlines   validate_lines ...      validate a JSON-lines file before anything is sent
    errors      StreamsError ...        the exception tree
    dlq         dead_letter ...         DLQ records with origin and error headers
"""

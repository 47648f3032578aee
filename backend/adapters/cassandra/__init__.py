"""The distributed time-series store: Apache Cassandra through cassandra-driver.

`CassandraTimeSeries` (`store`) composes the parts, one module each:

- `target`: what a `cassandra://` URL names (hosts, port, keyspace, replication, consistency);
- `driver`: the session on the cluster, its requests awaited on asyncio without blocking;
- `schema`: the tables, the statements over them, bringing a keyspace up to date;
- `batches`: rows packed into few UNLOGGED batches per group of partitions;
- `writes`: readings written as minute rows, with latest values and the partition index;
- `rollups`: the 60 s and 3600 s rollups, recomputed so that racing writers converge;
- `reads`: history, raw pages and latest values.
"""

from backend.adapters.cassandra.batches import pack_partitions
from backend.adapters.cassandra.schema import replication_map
from backend.adapters.cassandra.store import CassandraTimeSeries
from backend.adapters.cassandra.target import CassandraTarget, parse_target, parse_url

__all__ = ["CassandraTarget", "CassandraTimeSeries", "pack_partitions", "parse_target", "parse_url", "replication_map"]

"""spark-submit job: write the topology node name of every task's executor to a local file."""

import os
import sys

from pyspark.sql import SparkSession


def node_of(_: int) -> str:
    return os.environ.get("VPP_NODE", "?")


if __name__ == "__main__":
    out, partitions = sys.argv[1], int(sys.argv[2])
    spark = SparkSession.builder.getOrCreate()
    nodes = spark.sparkContext.parallelize(range(partitions), partitions).map(node_of).collect()
    with open(out, "w") as fh:
        fh.write("\n".join(nodes))
    spark.stop()

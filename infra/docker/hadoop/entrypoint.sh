#!/bin/bash
# Usage: vpp-entrypoint namenode|datanode. Renders core-site/hdfs-site from the environment
# (set by infra/platform.py from the topology) and runs the daemon in the foreground.
set -euo pipefail
role=${1:?namenode or datanode}
: "${VPP_BIND_HOST:?}" "${VPP_NAMENODE_RPC_PORT:?}" "${VPP_NAMENODE_HTTP_PORT:?}"
: "${VPP_DATANODE_DATA_PORT:?}" "${VPP_DATANODE_HTTP_PORT:?}" "${VPP_DATANODE_IPC_PORT:?}"
mkdir -p "$HADOOP_CONF_DIR" /data/hdfs
prop() { printf '  <property><name>%s</name><value>%s</value></property>\n' "$1" "$2"; }
{
  echo '<?xml version="1.0"?><configuration>'
  prop fs.defaultFS "hdfs://${VPP_BIND_HOST}:${VPP_NAMENODE_RPC_PORT}"
  prop hadoop.tmp.dir /data/hdfs/tmp
  prop hadoop.http.staticuser.user root
  echo '</configuration>'
} > "$HADOOP_CONF_DIR/core-site.xml"
{
  echo '<?xml version="1.0"?><configuration>'
  prop dfs.replication 1
  prop dfs.permissions.enabled false
  prop dfs.namenode.name.dir /data/hdfs/name
  prop dfs.datanode.data.dir /data/hdfs/data
  prop dfs.namenode.rpc-bind-host "${VPP_BIND_HOST}"
  prop dfs.namenode.http-address "${VPP_BIND_HOST}:${VPP_NAMENODE_HTTP_PORT}"
  prop dfs.datanode.address "${VPP_BIND_HOST}:${VPP_DATANODE_DATA_PORT}"
  prop dfs.datanode.http.address "${VPP_BIND_HOST}:${VPP_DATANODE_HTTP_PORT}"
  prop dfs.datanode.ipc.address "${VPP_BIND_HOST}:${VPP_DATANODE_IPC_PORT}"
  prop dfs.datanode.hostname "${VPP_BIND_HOST}"
  prop dfs.namenode.datanode.registration.ip-hostname-check false
  prop dfs.namenode.safemode.extension 0
  prop dfs.webhdfs.enabled true
  # One DataNode: never try to replace it on a failing write pipeline.
  prop dfs.client.block.write.replace-datanode-on-failure.enable false
  echo '</configuration>'
} > "$HADOOP_CONF_DIR/hdfs-site.xml"
cat > "$HADOOP_CONF_DIR/log4j.properties" <<'LOG'
log4j.rootLogger=WARN,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n
log4j.logger.org.apache.hadoop.hdfs.server.namenode.NameNode=INFO
log4j.logger.org.apache.hadoop.hdfs.server.datanode.DataNode=INFO
LOG
heap=${VPP_HEAP_MB:-512}
# Hadoop 3.4's Jersey/JAXB reflect into java.base; JDK 17 needs these opened (as Hadoop's own scripts do).
opens=()
for pkg in java.lang java.lang.reflect java.io java.net java.nio java.util java.util.concurrent sun.nio.ch; do
  opens+=(--add-opens "java.base/${pkg}=ALL-UNNAMED")
done
java_cmd=(java "-Xmx${heap}m" "${opens[@]}" -Djava.net.preferIPv4Stack=true -Dhadoop.log.dir=/data/hdfs/logs
          -Dlog4j.configuration=file:"$HADOOP_CONF_DIR/log4j.properties"
          -cp "$HADOOP_CONF_DIR:/opt/hadoop/jars/*")
case "$role" in
  namenode)
    if [ ! -d /data/hdfs/name/current ]; then
      "${java_cmd[@]}" org.apache.hadoop.hdfs.server.namenode.NameNode -format -nonInteractive -force
    fi
    main=org.apache.hadoop.hdfs.server.namenode.NameNode ;;
  datanode) main=org.apache.hadoop.hdfs.server.datanode.DataNode ;;
  *) echo "unknown HDFS role: $role" >&2; exit 2 ;;
esac
if [ -n "${VPP_AGENT_CMD:-}" ]; then bash -c "$VPP_AGENT_CMD" & fi
exec "${java_cmd[@]}" "$main"

// Benchmark baseline: the minimal Node consumer stream-indexer is compared against.
// kafkajs eachBatch -> one _bulk per partition batch (version_type=external_gte, the listing
// as _source plus version, event_id and indexed_at; a tombstone document for a delete) ->
// commit. No contract validation: records that are not an event object are skipped, fields
// the index mapping does not know are dropped (the mapping is strict). Run by
// bench/external_baselines.py: prints {"first_fetch": true} at its first batch, and its
// counters as one JSON line when SIGTERM stops it.
'use strict'
const fs = require('fs')
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs')
const LZ4 = require('kafkajs-lz4')

CompressionCodecs[CompressionTypes.LZ4] = new LZ4().codec
const [bootstrap, topic, groupId, url, index, mappingPath] = process.argv.slice(2)
const fields = Object.keys(JSON.parse(fs.readFileSync(mappingPath)).mappings.properties)
const kafka = new Kafka({ clientId: 'bench-node', brokers: [bootstrap], logLevel: logLevel.WARN })
const consumer = kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 1000 })
const counters = { docs_sent: 0, bulk_requests: 0, skipped: 0 }
let fetched = false

function source(event, indexedAt) {
  const doc = {}
  if (event.action === 'delete' || !event.data) {
    Object.assign(doc, { id: event.listing_id, deleted: true })
  } else {
    for (const f of fields) if (event.data[f] != null) doc[f] = event.data[f]
  }
  return Object.assign(doc, { version: event.version, event_id: event.event_id, indexed_at: indexedAt })
}

async function eachBatch({ batch }) {
  if (!fetched) (fetched = true), console.log('{"first_fetch": true}')
  const indexedAt = new Date().toISOString()
  const lines = []
  for (const message of batch.messages) {
    let event
    try { event = JSON.parse(message.value) } catch { counters.skipped++; continue }
    if (!event || !['index', 'delete'].includes(event.action) || event.version == null) { counters.skipped++; continue }
    const meta = { _index: index, _id: String(event.listing_id), version: event.version, version_type: 'external_gte' }
    lines.push(JSON.stringify({ index: meta }), JSON.stringify(source(event, indexedAt)))
  }
  if (lines.length) {
    const response = await fetch(`${url}/_bulk`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: lines.join('\n') + '\n' })
    const answer = await response.json()
    if (response.status !== 200) throw new Error(`bulk failed: HTTP ${response.status}`)
    for (const item of answer.errors ? answer.items : []) {
      const result = Object.values(item)[0] // 409: an older version than the index holds
      if (result.status >= 300 && result.status !== 409) throw new Error(`bulk item ${result.status}: ${JSON.stringify(result.error)}`)
    }
    counters.docs_sent += lines.length / 2
    counters.bulk_requests++
  }
  const next = (BigInt(batch.lastOffset()) + 1n).toString()
  await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: next }])
}

async function main() {
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({ autoCommit: false, eachBatch })
}

process.on('SIGTERM', async () => {
  await consumer.disconnect()
  console.log(JSON.stringify(counters))
  process.exit(0)
})
main().catch((error) => { console.error(error); process.exit(1) })

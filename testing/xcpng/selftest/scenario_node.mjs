// The self-trust scenario through Vates' JavaScript client (npm `xen-api`, JSON-RPC with
// XML-RPC fallback), the same steps as scenario_py.py.
// Usage: node scenario_node.mjs URL PASSWORD TRANSCRIPT.json
import { createClient } from 'xen-api'
import { writeFileSync } from 'node:fs'

const [url, password, out] = process.argv.slice(2)
const transcript = []
const xapi = createClient({ url, auth: { user: 'root', password }, allowUnauthorized: true, watchEvents: false })

async function call(method, ...args) {
  const opts = typeof args.at(-1) === 'object' && args.at(-1)?.expectError ? args.pop() : {}
  try {
    const result = await xapi.call(method, ...args)
    transcript.push({ method, args, result })
    if (opts.expectError) throw new Error(`${method} should have failed with ${opts.expectError}`)
    return result
  } catch (e) {
    if (e.code === undefined) throw e
    transcript.push({ method, args, error: [e.code, ...e.params] })
    if (opts.expectError === e.code) return undefined
    throw e
  }
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
async function wait(task) {
  for (let i = 0; i < 200; i++) {
    const rec = await call('task.get_record', task)
    if (rec.status !== 'pending') {
      await call('task.destroy', task)
      if (rec.status !== 'success') throw new Error('task failed: ' + rec.error_info)
      return rec.result
    }
    await sleep(100)
  }
  throw new Error('task did not finish')
}
const refOf = result => result.split('<value>').at(-1).split('</value>')[0]
const assert = (cond, what) => {
  if (!cond) throw new Error('assertion failed: ' + what)
}

await xapi.connect()
transcript.push({ method: 'session.login_with_password', args: ['root', '***'], result: xapi.sessionId })
const pools = await call('pool.get_all_records')
await call('host.get_record', Object.values(pools)[0].master)
const vms = await call('VM.get_all_records')
const base = Object.keys(vms).find(r => vms[r].name_label === 'base-vm')
const baseUuid = await call('VM.get_uuid', base)
assert((await call('VM.get_by_uuid', baseUuid)) === base, 'get_by_uuid')
await call('VM.get_record', base)
const clone = refOf(await wait(await call('Async.VM.clone', base, 'selftest-clone-js')))
let rec = await call('VM.get_record', clone)
assert(rec.name_label === 'selftest-clone-js' && !rec.is_a_template, 'clone record')
await call('VM.clean_shutdown', clone, { expectError: 'VM_BAD_POWER_STATE' })
await call('VM.set_VCPUs_max', clone, 2)
await call('VM.set_VCPUs_at_startup', clone, 2)
await call('VM.set_memory_limits', clone, 536870912, 2147483648, 2147483648, 2147483648)
await call('VM.add_to_other_config', clone, 'polyvisor_key', 'selftest-js')
await wait(await call('Async.VM.start', clone, false, false))
rec = await call('VM.get_record', clone)
assert(rec.power_state === 'Running', 'running')
const gm = await call('VM_guest_metrics.get_record', rec.guest_metrics)
assert(Object.keys(gm.networks).length > 0, 'guest networks')
for (const vif of rec.VIFs) await call('VIF.get_record', vif)
for (const con of rec.consoles) assert((await call('console.get_record', con)).protocol === 'rfb', 'rfb')
const snap = refOf(await wait(await call('Async.VM.snapshot', clone, 's1', [])))
const srec = await call('VM.get_record', snap)
assert(srec.is_a_snapshot && srec.snapshot_of === clone, 'snapshot relation')
await wait(await call('Async.VM.suspend', clone))
await wait(await call('Async.VM.resume', clone, false, false))
await wait(await call('Async.VM.hard_shutdown', clone))
await wait(await call('Async.VM.revert', snap))
await call('VM.set_is_a_template', clone, true)
await call('VM.set_is_a_template', clone, false)
for (const r of [snap, clone]) {
  for (const vbd of (await call('VM.get_record', r)).VBDs) {
    const b = await call('VBD.get_record', vbd)
    if (b.type === 'Disk') {
      await call('VDI.get_record', b.VDI)
      await call('VDI.destroy', b.VDI)
    }
  }
  await call('VM.destroy', r)
}
await call('VM.get_record', clone, { expectError: 'HANDLE_INVALID' })
await xapi.disconnect()
transcript.push({ method: 'session.logout', args: [], result: '' })
writeFileSync(out, JSON.stringify(transcript))
console.log(`scenario_node: ${transcript.length} calls`)

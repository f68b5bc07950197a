'use strict'
// forgerl swe-js test worker. It evaluates expressions against the package and reports their
// values; it never sees a test's name or expected value (the host compares, judge.py). Whatever
// it needs is captured before the package is loaded, each result line carries a nonce read from
// stdin before the package could run, and the package's own stdout goes to stderr.
const fs = require('fs')
const vm = require('vm')
const crypto = require('crypto')
const writeSync = fs.writeSync
const readFileSync = fs.readFileSync
const stringify = JSON.stringify
const parseJSON = JSON.parse
const keysOf = Object.keys
const isArray = Array.isArray
const protoOf = Object.getPrototypeOf
const objectProto = Object.prototype
const toTag = Object.prototype.toString
const apply = Reflect.apply
const isNaNNumber = Number.isNaN
const toStr = String
const Script = vm.Script
const exit = process.reallyExit ? process.reallyExit.bind(process) : process.exit.bind(process)
const watched = [
  ['JSON.stringify', JSON, 'stringify'], ['fs.writeSync', fs, 'writeSync'], ['Object.keys', Object, 'keys'],
  ['Array.isArray', Array, 'isArray'], ['Object.getPrototypeOf', Object, 'getPrototypeOf'],
  ['Reflect.apply', Reflect, 'apply'], ['vm.Script', vm, 'Script'], ['Number.isNaN', Number, 'isNaN'],
  ['String', globalThis, 'String'], ['Object.prototype.toString', Object.prototype, 'toString'],
]
const originals = watched.map(([, object, key]) => object[key])

const input = parseJSON(readFileSync(0, 'utf8'))
const nonce = input.nonce
const slot = '__forgerl_' + crypto.randomBytes(8).toString('hex')

function emit (message) {
  writeSync(1, nonce + ' ' + stringify(message) + '\n')
}

process.stdout.write = function (chunk, encoding, callback) {
  return process.stderr.write(chunk, encoding, callback)
}

function text (value) {
  try {
    return toStr(value).slice(0, 300)
  } catch (e) {
    return '<unprintable>'
  }
}

function encode (value, depth) {
  if (depth > 32) return ['x', 'too deep', '']
  if (value === null) return null
  const type = typeof value
  if (type === 'boolean') return value
  if (type === 'undefined') return ['u']
  if (type === 'number') return isNaNNumber(value) ? ['nan'] : ['n', toStr(value)]
  if (type === 'string') return ['s', value]
  if (type === 'bigint') return ['b', toStr(value)]
  if (type === 'object' && isArray(value)) {
    const items = []
    for (let i = 0; i < value.length; i++) items[items.length] = encode(value[i], depth + 1)
    return ['a', items]
  }
  if (type === 'object' && (protoOf(value) === objectProto || protoOf(value) === null)) {
    const pairs = []
    const keys = keysOf(value)
    for (let i = 0; i < keys.length; i++) pairs[pairs.length] = [keys[i], encode(value[keys[i]], depth + 1)]
    return ['o', pairs]
  }
  return ['x', type === 'object' ? apply(toTag, value, []) : type, '']
}

function raised (error) {
  let name = typeof error
  try {
    if (error !== null && typeof error === 'object' && typeof error.name === 'string') name = error.name
  } catch (e) {}
  return { raised: text(name), message: text(error && typeof error === 'object' ? error.message : error) }
}

let thunks = null
try {
  const body = input.prelude + '\nreturn [' + input.exprs.map((e) => '() => (' + e + ')').join(',\n') + ']'
  thunks = new Function('require', body)(require) // eslint-disable-line no-new-func
} catch (error) {
  emit(Object.assign({ header: true }, raised(error)))
}

if (thunks !== null && input.mode === 'bench') {
  const last = []
  for (let round = 0; round < input.rounds; round++) {
    for (let i = 0; i < thunks.length; i++) {
      try {
        last[i] = { value: thunks[i]() }
      } catch (error) {
        last[i] = { error }
      }
    }
  }
  for (let i = 0; i < thunks.length; i++) {
    emit('error' in last[i] ? Object.assign({ t: i }, raised(last[i].error)) : { t: i, value: encode(last[i].value, 0) })
  }
} else if (thunks !== null) {
  const run = new Script(slot + '()')
  for (let i = 0; i < thunks.length; i++) {
    globalThis[slot] = thunks[i]
    let message
    try {
      message = { t: i, value: encode(run.runInThisContext({ timeout: input.timeout_ms }), 0) }
    } catch (error) {
      const timedOut = error && error.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT'
      message = timedOut ? { t: i, timeout: true } : Object.assign({ t: i }, raised(error))
    }
    emit(message)
  }
}
const changed = watched.filter(([, object, key], i) => object[key] !== originals[i]).map(([name]) => name)
if (changed.length) emit({ integrity: changed })
emit({ done: thunks === null ? 0 : thunks.length })
exit(0)

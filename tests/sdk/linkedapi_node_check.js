// Drives LinkedAPI's official Node SDK against the sandbox with only its baseUrl changed.
// Usage: node linkedapi_node_check.js BASE_URL  (prints one line per step; exit 1 on failure)
const { LinkedApi } = require('@linkedapi/node');
const baseUrl = process.argv[2];
(async () => {
  const api = new LinkedApi({ linkedApiToken: 'sbx-linkedapi-token', identificationToken: 'sbx-idt-acct-alice', baseUrl });
  const url = 'https://www.linkedin.com/in/ada-lovelace-0001';
  const id1 = await api.checkConnectionStatus.execute({ personUrl: url });
  console.log('check', JSON.stringify(await api.checkConnectionStatus.result(id1, { pollInterval: 200 })));
  const id2 = await api.sendConnectionRequest.execute({ personUrl: url, note: 'Hello Ada' });
  console.log('invite', JSON.stringify(await api.sendConnectionRequest.result(id2, { pollInterval: 200 })));
  const id3 = await api.sendConnectionRequest.execute({ personUrl: url, note: 'Hello again' });
  try { console.log('invite2', JSON.stringify(await api.sendConnectionRequest.result(id3, { pollInterval: 200 }))); }
  catch (e) { console.log('invite2 error', e.type || e.name, e.message); }
  const bad = new LinkedApi({ linkedApiToken: 'nope', identificationToken: 'x', baseUrl });
  try { await bad.checkConnectionStatus.execute({ personUrl: url }); } catch (e) { console.log('auth error', e.type, e.message); }
})().catch(e => { console.error('FAILED', e); process.exit(1); });

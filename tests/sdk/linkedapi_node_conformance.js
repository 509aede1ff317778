// Runs every public operation of LinkedAPI's official Node SDK against the sandbox (baseUrl
// changed only) and prints one JSON line per operation: {"op", "result"} or {"op", "error"}.
// Usage: node linkedapi_node_conformance.js BASE_URL '{"token", "ident", "friend", ...}'
// A call the SDK throws httpError for (an injected 5xx or timeout) is retried, as a client
// must; every retry is reported in the last line ({"op": "retried", "result": [{op, type}]}).
const { LinkedApi, LinkedApiAdmin, LinkedApiError } = require('@linkedapi/node');

const [baseUrl, argsJson] = process.argv.slice(2);
const a = JSON.parse(argsJson);
const api = new LinkedApi({ linkedApiToken: a.token, identificationToken: a.ident, baseUrl });
// LinkedApiAdmin passes no baseUrl to its HTTP client but takes one: the SDK's own, built
// with the sandbox's base URL
const { buildAdminHttpClient } = require('@linkedapi/node/dist/admin/admin-http-client');
const admin = new LinkedApiAdmin(buildAdminHttpClient({ linkedApiToken: a.token }, 'node', baseUrl));
const retried = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function retry(fn, retryable, op) {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof LinkedApiError && retryable.includes(e.type) && i < 30) {
        retried.push({ op, type: e.type });
        await sleep(10);
        continue;
      }
      throw e;
    }
  }
}

function out(op, result) {
  console.log(JSON.stringify({ op, result: result === undefined ? null : result }));
}

async function workflow(name, params) {
  try {
    const op = api[name];
    const id = await retry(() => op.execute(params), ['httpError'], name);
    out(name, await op.result(id, { pollInterval: 20 }));
  } catch (e) {
    console.log(JSON.stringify({ op: name, error: e.type || String(e), message: e.message }));
  }
}

async function direct(name, fn, retryable = ['httpError']) {
  try {
    out(name, await retry(fn, retryable, name));
  } catch (e) {
    console.log(JSON.stringify({ op: name, error: e.type || String(e), message: e.message }));
  }
}

(async () => {
  const now = new Date();
  await workflow('customWorkflow', {
    actionType: 'st.searchPeople', limit: 3, filter: { currentCompanies: [a.companyName] },
    then: { actionType: 'st.doForPeople',
      then: { actionType: 'st.openPersonPage', basicInfo: true,
        then: { actionType: 'st.retrievePersonSkills' } } },
  });
  await workflow('fetchPerson', {
    personUrl: a.friend, retrieveExperience: true, retrieveEducation: true,
    retrieveSkills: true, retrieveLanguages: true, retrievePosts: true,
    postsRetrievalConfig: { limit: 5 }, retrieveComments: true, retrieveReactions: true,
  });
  await workflow('nvFetchPerson', { personHashedUrl: a.strangerHashed });
  await workflow('fetchCompany', {
    companyUrl: a.companyUrl, retrieveEmployees: true, employeesRetrievalConfig: { limit: 5 },
    retrieveDMs: true, retrievePosts: true, postsRetrievalConfig: { limit: 2 },
  });
  await workflow('nvFetchCompany', {
    companyHashedUrl: a.companyHashedUrl, retrieveEmployees: true, retrieveDMs: true,
  });
  await workflow('fetchPost', { postUrl: a.postUrl, retrieveComments: true, retrieveReactions: true });
  await workflow('searchCompanies', { limit: 5, filter: { industries: [a.industry] } });
  await workflow('nvSearchCompanies', { limit: 5 });
  await workflow('searchPeople', { limit: 5, filter: { currentCompanies: [a.companyName] } });
  await workflow('nvSearchPeople', { limit: 5, filter: { locations: [a.city] } });
  await workflow('checkConnectionStatus', { personUrl: a.stranger });
  await workflow('sendConnectionRequest', { personUrl: a.stranger, note: 'Hello' });
  await workflow('retrievePendingRequests', {});
  await workflow('withdrawConnectionRequest', { personUrl: a.stranger });
  await workflow('retrieveConnections', { limit: 5, filter: { firstName: a.friendFirstName } });
  await workflow('sendMessage', { personUrl: a.friend, text: 'Hello there' });
  await workflow('syncConversation', { personUrl: a.friend });
  await workflow('nvSendMessage', { personUrl: a.stranger, text: 'Hi', subject: 'Intro' });
  await workflow('nvSyncConversation', { personUrl: a.stranger });
  await direct('pollConversations', () => api.pollConversations([{ personUrl: a.friend, type: 'st' }]));
  await workflow('removeConnection', { personUrl: a.friend });
  await workflow('reactToPost', { postUrl: a.postUrl, type: 'like' });
  await workflow('commentOnPost', { postUrl: a.postUrl, text: 'Nice post' });
  await workflow('createPost', { text: 'Shipping notes' });
  await workflow('retrieveSSI', {});
  await workflow('retrievePerformance', {});
  await direct('cancel', async () => {
    const id = await retry(() => api.checkConnectionStatus.execute({ personUrl: a.stranger }),
      ['httpError'], 'cancel');
    return { cancelled: await api.checkConnectionStatus.cancel(id) };
  });
  await direct('getAccountInfo', () => api.getAccountInfo());
  await direct('getApiUsage', () => api.getApiUsage({
    start: new Date(now.getTime() - 86400000).toISOString(),
    end: new Date(now.getTime() + 86400000).toISOString() }));
  const adminRetry = ['httpError', 'tooManyRequests'];  // the admin API has a rate limit
  const acct = { accountId: a.account };
  await direct('admin.accounts.getAll', () => admin.accounts.getAll(), adminRetry);
  await direct('admin.limits.getDefaults', () => admin.limits.getDefaults(), adminRetry);
  await direct('admin.limits.set', () => admin.limits.set({ ...acct, limits: [
    { category: 'stMessages', period: 'daily', maxValue: 20 }] }), adminRetry);
  await direct('admin.limits.get', () => admin.limits.get(acct), adminRetry);
  await direct('admin.limits.getUsage', () => admin.limits.getUsage(acct), adminRetry);
  await direct('admin.limits.delete', () => admin.limits.delete({ ...acct, limits: [
    { category: 'stMessages', period: 'daily' }] }), adminRetry);
  await direct('admin.limits.resetToDefaults', () => admin.limits.resetToDefaults(acct), adminRetry);
  const session = await retry(() => admin.accounts.createConnectionSession(), adminRetry,
    'admin.accounts.createConnectionSession');
  out('admin.accounts.createConnectionSession', session);
  await direct('admin.accounts.getConnectionSession',
    () => admin.accounts.getConnectionSession({ sessionId: session.sessionId }), adminRetry);
  await direct('admin.accounts.cancelConnectionSession',
    () => admin.accounts.cancelConnectionSession({ sessionId: session.sessionId }), adminRetry);
  for (const m of ['getStatus', 'getSeats', 'getPricing', 'getBillingLink']) {
    await direct(`admin.subscription.${m}`, () => admin.subscription[m](), adminRetry);
  }
  await direct('admin.accounts.regenerateIdentificationToken',
    () => admin.accounts.regenerateIdentificationToken(acct), adminRetry);
  await direct('oldTokenRefused', () => api.getAccountInfo());
  console.log(JSON.stringify({ op: 'retried', result: retried }));
})().catch((e) => { console.error('FAILED', e); process.exit(1); });

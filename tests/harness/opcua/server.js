// A strict OPC UA server made with node-opcua, for the tests: Basic256Sha256 with SignAndEncrypt
// only, and no client certificate is accepted unless its PKI folder's trust list vouches for it.
//
//   node server.js CONFIG_JSON
//
// CONFIG_JSON: {"modules": NODE_MODULES_DIR, "pki": PKI_FOLDER, "port": PORT,
//               "certificate": PEM_CHAIN_FILE, "privateKey": PEM_KEY_FILE, "applicationUri": URI,
//               "variables": [{"name": "Line.count", "dataType": "UInt32", "value": 5, "step": 1}, ...]}
//
// PKI_FOLDER is node-opcua's certificate manager's folder: trusted/{certs,crl}, issuers/{certs,crl},
// rejected (own/ is made by node-opcua and not used: the server's certificate comes from
// `certificate`, which holds its chain). Each variable is `ns=1;s=<name>` under Objects; a
// variable with a `step` grows by it every 100 ms. Listens on 127.0.0.1 only, prints
// "listening <endpoint url>" once it does, and shuts down on SIGTERM.
'use strict';

const path = require('path');

const config = JSON.parse(process.argv[2]);
const opcua = require(path.join(config.modules, 'node-opcua'));
const { OPCUAServer, OPCUACertificateManager, SecurityPolicy, MessageSecurityMode, DataType, Variant } = opcua;

function addVariables(server) {
  const addressSpace = server.engine.addressSpace;
  const namespace = addressSpace.getOwnNamespace();
  const values = {};
  for (const variable of config.variables) {
    values[variable.name] = variable.value;
    namespace.addVariable({
      organizedBy: addressSpace.rootFolder.objects,
      browseName: variable.name,
      nodeId: `s=${variable.name}`,
      dataType: variable.dataType,
      minimumSamplingInterval: 50, // without it node-opcua warns, and samples at its own pace
      value: { get: () => new Variant({ dataType: DataType[variable.dataType], value: values[variable.name] }) },
    });
  }
  const growing = config.variables.filter((variable) => variable.step);
  setInterval(() => {
    for (const variable of growing) values[variable.name] += variable.step;
  }, 100);
}

async function main() {
  const certificateManager = new OPCUACertificateManager({
    rootFolder: config.pki,
    automaticallyAcceptUnknownCertificate: false,
  });
  await certificateManager.initialize();
  const server = new OPCUAServer({
    port: config.port,
    host: '127.0.0.1',
    resourcePath: '/plantline',
    certificateFile: config.certificate,
    privateKeyFile: config.privateKey,
    serverCertificateManager: certificateManager,
    securityPolicies: [SecurityPolicy.Basic256Sha256],
    securityModes: [MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: true,
    serverInfo: {
      applicationUri: config.applicationUri,
      productUri: 'urn:plantline:test:node-opcua',
      applicationName: { text: 'PlantLine test server (node-opcua)' },
    },
  });
  await server.initialize();
  addVariables(server);
  await server.start();
  process.stdout.write(`listening ${server.getEndpointUrl()}\n`);
  process.on('SIGTERM', () => {
    server.shutdown(0).then(() => process.exit(0));
  });
}

main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});

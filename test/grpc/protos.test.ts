// The gRPC protos hold the upstream wire contract: every message, field number, type, enum value and RPC of the
// upstream files (recorded in .wire.txt by scripts/check-grpc-protos.ts), and nothing else.

import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { contractDiff, wireContract } from '../../scripts/check-grpc-protos.js';
import { ROOT } from '../helpers/gateway.js';

const protos = ['inference/open_inference_grpc.proto', 'grpc/health/v1/health.proto'];

for (const proto of protos) {
  test(`${proto} matches the upstream contract line by line`, (t) => {
    const file = path.join(ROOT, 'protos', proto);
    const upstream = readFileSync(file.replace(/\.proto$/, '.wire.txt'), 'utf8')
      .trim()
      .split('\n');
    t.deepEqual(contractDiff(upstream, wireContract(file)), []);
  });
}

test('the names and numbers the gateway relies on are in the contract', (t) => {
  const contract = new Set(wireContract(path.join(ROOT, 'protos', protos[0]!)));
  for (const line of [
    'rpc inference.GRPCInferenceService.ModelInfer(inference.ModelInferRequest) returns (inference.ModelInferResponse)',
    'field inference.ModelInferRequest.raw_input_contents = 7 repeated bytes',
    'field inference.ModelInferResponse.raw_output_contents = 6 repeated bytes',
    'field inference.ModelInferRequest.InferInputTensor.contents = 5 single inference.InferTensorContents',
    'field inference.InferTensorContents.int64_contents = 3 repeated int64',
    'field inference.InferTensorContents.uint64_contents = 5 repeated uint64',
    'field inference.InferParameter.int64_param = 2 single int64 oneof parameter_choice',
  ]) {
    t.true(contract.has(line), line);
  }
  const health = new Set(wireContract(path.join(ROOT, 'protos', protos[1]!)));
  t.true(health.has('rpc grpc.health.v1.Health.Watch(grpc.health.v1.HealthCheckRequest) returns (stream grpc.health.v1.HealthCheckResponse)'));
  t.true(health.has('value grpc.health.v1.HealthCheckResponse.ServingStatus.SERVICE_UNKNOWN = 3'));
});

test('a changed number or type is caught: the check is not vacuous', (t) => {
  const upstream = wireContract(path.join(ROOT, 'protos', protos[0]!));
  const edited = upstream.map((l) => l.replace('raw_input_contents = 7', 'raw_input_contents = 8'));
  t.deepEqual(contractDiff(upstream, edited), [
    '- field inference.ModelInferRequest.raw_input_contents = 7 repeated bytes',
    '+ field inference.ModelInferRequest.raw_input_contents = 8 repeated bytes',
  ]);
});

package com.gagiteck.interop;

import com.gagiteck.v1.Agent;
import com.gagiteck.v1.AgentConfig;
import com.gagiteck.v1.AgentRun;
import com.gagiteck.v1.AgentRunEvent;
import com.gagiteck.v1.AgentServiceGrpc;
import com.gagiteck.v1.AgentStatus;
import com.gagiteck.v1.AuthServiceGrpc;
import com.gagiteck.v1.CreateAgentRequest;
import com.gagiteck.v1.CreateWorkflowRequest;
import com.gagiteck.v1.DeleteAgentRequest;
import com.gagiteck.v1.DeleteWorkflowRequest;
import com.gagiteck.v1.Execution;
import com.gagiteck.v1.ExecutionServiceGrpc;
import com.gagiteck.v1.ExecutionStatus;
import com.gagiteck.v1.ExecutionType;
import com.gagiteck.v1.GetAgentRequest;
import com.gagiteck.v1.GetCurrentUserRequest;
import com.gagiteck.v1.GetExecutionRequest;
import com.gagiteck.v1.ListAgentsRequest;
import com.gagiteck.v1.ListAgentsResponse;
import com.gagiteck.v1.ListExecutionsRequest;
import com.gagiteck.v1.RunStarted;
import com.gagiteck.v1.LoginRequest;
import com.gagiteck.v1.LoginResponse;
import com.gagiteck.v1.SignUpRequest;
import com.gagiteck.v1.StepResult;
import com.gagiteck.v1.StreamAgentRunRequest;
import com.gagiteck.v1.TokenUsage;
import com.gagiteck.v1.ToolCall;
import com.gagiteck.v1.TriggerWorkflowRequest;
import com.gagiteck.v1.UpdateAgentRequest;
import com.gagiteck.v1.User;
import com.gagiteck.v1.WatchExecutionRequest;
import com.gagiteck.v1.Workflow;
import com.gagiteck.v1.WorkflowServiceGrpc;
import com.gagiteck.v1.WorkflowStep;
import com.google.protobuf.Any;
import com.google.protobuf.FieldMask;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Struct;
import com.google.protobuf.Value;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RequestInfo;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ChannelCredentials;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.AbstractStub;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.MetadataUtils;
import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumSet;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Interop checks of the gagiteck.v1 API through the gateway, from grpc-java.
 *
 * <p>Usage: {@code InteropClient HOST:PORT}. Prints {@code PASS name} or {@code FAIL name: why}
 * per check, then {@code N passed, N failed}; exits 1 if any check failed.
 *
 * <p>Plaintext unless {@code GATEWAY_INTEROP_TLS_CA} names the CA of the gateway's certificate:
 * then TLS, presenting {@code GATEWAY_INTEROP_TLS_CERT} and {@code GATEWAY_INTEROP_TLS_KEY} (a
 * PKCS#8 key) as the client certificate (mTLS), and only a few checks run: a client without a
 * certificate is refused, a unary call, a stream.
 */
public final class InteropClient {

  static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> REQUEST_ID =
      Metadata.Key.of("x-request-id", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> TENANT_ID =
      Metadata.Key.of("x-tenant-id", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> RATE_LIMIT =
      Metadata.Key.of("x-ratelimit-limit", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> RATE_REMAINING =
      Metadata.Key.of("x-ratelimit-remaining", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> RATE_RESET =
      Metadata.Key.of("x-ratelimit-reset", Metadata.ASCII_STRING_MARSHALLER);

  /** Every call gets this much time unless a check says otherwise. */
  static final long CALL_TIMEOUT_MS = 10_000;

  static final EnumSet<ExecutionStatus> TERMINAL =
      EnumSet.of(
          ExecutionStatus.EXECUTION_STATUS_COMPLETED,
          ExecutionStatus.EXECUTION_STATUS_FAILED,
          ExecutionStatus.EXECUTION_STATUS_CANCELLED);

  /** A failed expectation: its message is the "why" of the FAIL line. */
  static final class CheckFailed extends RuntimeException {
    CheckFailed(String message) {
      super(message);
    }
  }

  @FunctionalInterface
  interface Check {
    void run() throws Exception;
  }

  /**
   * Adds {@code authorization: Bearer <token>} once a token is known, and a fresh
   * {@code x-request-id} to every call that does not carry one already.
   */
  static final class CredentialsInterceptor implements ClientInterceptor {
    volatile String token;

    @Override
    public <ReqT, RespT> ClientCall<ReqT, RespT> interceptCall(
        MethodDescriptor<ReqT, RespT> method, CallOptions options, Channel next) {
      return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
        @Override
        public void start(Listener<RespT> listener, Metadata headers) {
          String bearer = token;
          if (bearer != null && !headers.containsKey(AUTHORIZATION)) {
            headers.put(AUTHORIZATION, "Bearer " + bearer);
          }
          if (!headers.containsKey(REQUEST_ID)) {
            headers.put(REQUEST_ID, "java-" + UUID.randomUUID());
          }
          super.start(listener, headers);
        }
      };
    }
  }

  private final String target;
  private final TlsFiles tls;
  private final ManagedChannel channel;
  private final CredentialsInterceptor credentials = new CredentialsInterceptor();
  private final String run = UUID.randomUUID().toString().substring(0, 8);
  private int passed;
  private int failed;

  // State carried from one check to the next.
  private String agentId;
  private Agent createdAgent;

  /** The PEM files of GATEWAY_INTEROP_TLS_*; {@code ca} null means plaintext. */
  static final class TlsFiles {
    final String ca;
    final String cert;
    final String key;

    TlsFiles(String ca, String cert, String key) {
      this.ca = ca;
      this.cert = cert;
      this.key = key;
    }

    static TlsFiles fromEnv() {
      return new TlsFiles(
          System.getenv("GATEWAY_INTEROP_TLS_CA"),
          System.getenv("GATEWAY_INTEROP_TLS_CERT"),
          System.getenv("GATEWAY_INTEROP_TLS_KEY"));
    }

    boolean on() {
      return ca != null && !ca.isEmpty();
    }

    /** Trusting the CA only; presenting the client key pair when named and asked for. */
    ChannelCredentials credentials(boolean withClientCert) throws IOException {
      if (!on()) {
        return InsecureChannelCredentials.create();
      }
      TlsChannelCredentials.Builder builder =
          TlsChannelCredentials.newBuilder().trustManager(new File(ca));
      if (withClientCert && cert != null && !cert.isEmpty()) {
        builder.keyManager(new File(cert), new File(key));
      }
      return builder.build();
    }
  }

  InteropClient(String target, TlsFiles tls) throws IOException {
    this.target = target;
    this.tls = tls;
    this.channel = Grpc.newChannelBuilder(target, tls.credentials(true)).build();
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 1) {
      System.err.println("usage: InteropClient HOST:PORT");
      System.exit(2);
    }
    InteropClient client = new InteropClient(args[0], TlsFiles.fromEnv());
    int failed;
    try {
      failed = client.runAll();
    } finally {
      client.channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    System.exit(failed == 0 ? 0 : 1);
  }

  int runAll() {
    if (tls.on()) {
      return runOverTls();
    }
    check("auth.signup_login", this::signUpAndLogin);
    check("agent.create", this::createAgent);
    check("agent.get", this::getAgent);
    check("agent.list", this::listAgents);
    check("agent.update_field_mask", this::updateAgentWithMask);
    check("agent.delete", this::deleteAgent);
    check("workflow.trigger_to_terminal", this::triggerWorkflow);
    check("error.not_found_error_info", this::notFound);
    check("error.invalid_agent_id_bad_request", this::invalidAgentId);
    check("error.list_limit_bad_request", this::listLimitTooLarge);
    check("deadline.exceeded", this::deadlineExceeded);
    check("metadata.request_id_in_trailers", this::requestIdEchoed);
    check("metadata.request_id_in_request_info", this::requestIdOnError);
    if (System.getenv("GATEWAY_INTEROP_PASSTHROUGH") != null) {
      check("passthrough.unary_returned_headers", this::returnedHeaders);
    }
    check("stream.agent_run_to_end", this::streamAgentRunToEnd);
    check("stream.agent_run_cancel", this::streamAgentRunCancel);
    check("stream.watch_execution_to_terminal", this::watchExecutionToTerminal);
    System.out.println(passed + " passed, " + failed + " failed");
    System.out.flush();
    return failed;
  }

  /** The few checks of the mTLS run. */
  int runOverTls() {
    if (tls.cert != null && !tls.cert.isEmpty()) {
      check("tls.refused_without_client_cert", this::refusedWithoutClientCert);
    }
    check("auth.signup_login", this::signUpAndLogin);
    check("agent.create", this::createAgent);
    check("stream.agent_run_to_end", this::streamAgentRunToEnd);
    System.out.println(passed + " passed, " + failed + " failed");
    System.out.flush();
    return failed;
  }

  void check(String name, Check body) {
    String why;
    try {
      body.run();
      why = null;
    } catch (CheckFailed e) {
      why = e.getMessage();
    } catch (StatusRuntimeException e) {
      why = "unexpected " + describe(e);
    } catch (Exception e) {
      why = e.getClass().getSimpleName() + ": " + e.getMessage();
    }
    if (why == null) {
      passed++;
      System.out.println("PASS " + name);
    } else {
      failed++;
      System.out.println("FAIL " + name + ": " + why.replace('\n', ' '));
    }
    System.out.flush();
  }

  // ------------------------------------------------------------------ stubs

  private <S extends AbstractStub<S>> S prepared(S stub) {
    return stub.withInterceptors(credentials).withDeadlineAfter(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
  }

  AgentServiceGrpc.AgentServiceBlockingStub agents() {
    return prepared(AgentServiceGrpc.newBlockingStub(channel));
  }

  WorkflowServiceGrpc.WorkflowServiceBlockingStub workflows() {
    return prepared(WorkflowServiceGrpc.newBlockingStub(channel));
  }

  ExecutionServiceGrpc.ExecutionServiceBlockingStub executions() {
    return prepared(ExecutionServiceGrpc.newBlockingStub(channel));
  }

  AgentServiceGrpc.AgentServiceStub agentsAsync() {
    return prepared(AgentServiceGrpc.newStub(channel));
  }

  AuthServiceGrpc.AuthServiceBlockingStub auth() {
    return prepared(AuthServiceGrpc.newBlockingStub(channel));
  }

  // ------------------------------------------------------------------ checks

  /** A second channel trusting the CA but without a client certificate: UNAVAILABLE. */
  void refusedWithoutClientCert() throws Exception {
    ManagedChannel bare = Grpc.newChannelBuilder(target, tls.credentials(false)).build();
    try {
      StatusRuntimeException e =
          expectError(
              () ->
                  AgentServiceGrpc.newBlockingStub(bare)
                      .withDeadlineAfter(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS)
                      .listAgents(ListAgentsRequest.getDefaultInstance()));
      expectCode(e, Status.Code.UNAVAILABLE);
    } finally {
      bare.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  void signUpAndLogin() {
    String email = "java-interop-" + run + "@example.com";
    String password = "s3cret-" + run + "-pw";
    AuthServiceGrpc.AuthServiceBlockingStub anonymous =
        AuthServiceGrpc.newBlockingStub(channel)
            .withDeadlineAfter(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
    User user =
        anonymous.signUp(
            SignUpRequest.newBuilder()
                .setEmail(email)
                .setPassword(password)
                .setName("Java Interop")
                .build());
    expect(!user.getId().isEmpty(), "SignUp returned a user without id");
    expect(email.equals(user.getEmail()), "SignUp returned email " + user.getEmail());
    LoginResponse login =
        anonymous.login(LoginRequest.newBuilder().setEmail(email).setPassword(password).build());
    expect(!login.getAccessToken().isEmpty(), "Login returned no access_token");
    expect(
        login.getAccessToken().chars().filter(c -> c == '.').count() == 2,
        "access_token is not a JWT");
    credentials.token = login.getAccessToken();
    User me = auth().getCurrentUser(GetCurrentUserRequest.getDefaultInstance());
    expect(
        email.equals(me.getEmail()),
        "GetCurrentUser with the JWT answered " + me.getEmail() + ", want " + email);
  }

  void createAgent() {
    Agent draft =
        Agent.newBuilder()
            .setName("java-interop-" + run)
            .setSystemPrompt("You are the Java interop agent.")
            .setConfig(AgentConfig.newBuilder().setModel("claude-3-sonnet").setTemperature(0.5))
            .addTools("calculator")
            .setMetadata(struct("suite", "interop-java"))
            .build();
    Agent agent = agents().createAgent(CreateAgentRequest.newBuilder().setAgent(draft).build());
    expect(!agent.getId().isEmpty(), "created agent has no id");
    expect(draft.getName().equals(agent.getName()), "name " + agent.getName());
    expect(draft.getSystemPrompt().equals(agent.getSystemPrompt()), "system_prompt differs");
    expect(agent.getToolsList().contains("calculator"), "tools " + agent.getToolsList());
    expect(
        agent.getConfig().getTemperature() == 0.5,
        "config.temperature " + agent.getConfig().getTemperature());
    expect(
        "interop-java"
            .equals(agent.getMetadata().getFieldsOrDefault("suite", Value.getDefaultInstance())
                .getStringValue()),
        "metadata " + agent.getMetadata());
    expect(agent.getStatus() == AgentStatus.AGENT_STATUS_ACTIVE, "status " + agent.getStatus());
    expect(agent.hasCreatedAt(), "created_at is not set");
    agentId = agent.getId();
    createdAgent = agent;
  }

  void getAgent() {
    String id = needAgent();
    Agent agent = agents().getAgent(GetAgentRequest.newBuilder().setAgentId(id).build());
    expect(id.equals(agent.getId()), "id " + agent.getId());
    expect(createdAgent.getName().equals(agent.getName()), "name " + agent.getName());
    expect(
        createdAgent.getSystemPrompt().equals(agent.getSystemPrompt()),
        "system_prompt " + agent.getSystemPrompt());
  }

  void listAgents() {
    String id = needAgent();
    ListAgentsResponse page = agents().listAgents(ListAgentsRequest.newBuilder().setLimit(100).build());
    expect(
        page.getDataList().stream().anyMatch(a -> id.equals(a.getId())),
        "the created agent is not in the list of " + page.getDataCount());
    expect(page.getTotal() >= 1, "total " + page.getTotal());
    expect(page.getLimit() == 100, "limit " + page.getLimit() + ", want 100");
    expect(page.getOffset() == 0, "offset " + page.getOffset());
  }

  void updateAgentWithMask() {
    String id = needAgent();
    String newName = "java-interop-renamed-" + run;
    Agent patch =
        Agent.newBuilder()
            .setName(newName)
            // Not in the mask: must not be sent, so must not change.
            .setSystemPrompt("THIS MUST NOT BE APPLIED")
            .build();
    Agent updated =
        agents()
            .updateAgent(
                UpdateAgentRequest.newBuilder()
                    .setAgentId(id)
                    .setAgent(patch)
                    .setUpdateMask(FieldMask.newBuilder().addPaths("name"))
                    .build());
    expect(newName.equals(updated.getName()), "name after update " + updated.getName());
    expect(
        createdAgent.getSystemPrompt().equals(updated.getSystemPrompt()),
        "unmasked system_prompt changed to '" + updated.getSystemPrompt() + "'");
    Agent fetched = agents().getAgent(GetAgentRequest.newBuilder().setAgentId(id).build());
    expect(newName.equals(fetched.getName()), "GetAgent after update: name " + fetched.getName());
    expect(
        createdAgent.getSystemPrompt().equals(fetched.getSystemPrompt()),
        "GetAgent after update: system_prompt '" + fetched.getSystemPrompt() + "'");
    expect(
        fetched.getConfig().getTemperature() == 0.5,
        "GetAgent after update: config.temperature " + fetched.getConfig().getTemperature());
  }

  void deleteAgent() {
    String id = needAgent();
    agents().deleteAgent(DeleteAgentRequest.newBuilder().setAgentId(id).build());
    StatusRuntimeException e =
        expectError(() -> agents().getAgent(GetAgentRequest.newBuilder().setAgentId(id).build()));
    expectCode(e, Status.Code.NOT_FOUND);
    agentId = null;
  }

  void triggerWorkflow() throws InterruptedException {
    Agent helper =
        agents()
            .createAgent(
                CreateAgentRequest.newBuilder()
                    .setAgent(
                        Agent.newBuilder()
                            .setName("java-interop-step-agent-" + run)
                            .setSystemPrompt("You greet people."))
                    .build());
    String workflowId = null;
    try {
      Workflow workflow =
          workflows()
              .createWorkflow(
                  CreateWorkflowRequest.newBuilder()
                      .setWorkflow(
                          Workflow.newBuilder()
                              .setName("java-interop-workflow-" + run)
                              .setDescription("transform then agent")
                              .addSteps(
                                  WorkflowStep.newBuilder()
                                      .setId("greet")
                                      .setType("transform")
                                      .setName("Greeting")
                                      .setConfig(struct("template", "Hello {{input.name}}")))
                              .addSteps(
                                  WorkflowStep.newBuilder()
                                      .setId("answer")
                                      .setType("agent")
                                      .setName("Answer")
                                      .setConfig(
                                          struct(
                                              "agent_id", helper.getId(),
                                              "message", "Reply to: {{greet.output}}"))))
                      .build());
      workflowId = workflow.getId();
      expect(!workflowId.isEmpty(), "created workflow has no id");
      expect(workflow.getStepsCount() == 2, "workflow has " + workflow.getStepsCount() + " steps");

      Execution started =
          workflows()
              .triggerWorkflow(
                  TriggerWorkflowRequest.newBuilder()
                      .setWorkflowId(workflowId)
                      .setInput(struct("name", "Java"))
                      .build());
      expect(!started.getId().isEmpty(), "TriggerWorkflow returned no execution id");
      expect(
          workflowId.equals(started.getResourceId()),
          "execution resource_id " + started.getResourceId());

      Execution execution = started;
      long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (!TERMINAL.contains(execution.getStatus())) {
        if (System.nanoTime() > until) {
          throw new CheckFailed("execution still " + execution.getStatus() + " after 30 s");
        }
        Thread.sleep(50);
        execution =
            executions()
                .getExecution(
                    GetExecutionRequest.newBuilder().setExecutionId(started.getId()).build());
      }
      expect(
          execution.getStatus() == ExecutionStatus.EXECUTION_STATUS_COMPLETED,
          "execution ended " + execution.getStatus() + ": " + execution.getError());
      expect(
          execution.getStepResultsCount() == 2,
          "step_results has " + execution.getStepResultsCount() + " entries");
      StepResult greet = execution.getStepResults(0);
      expect(
          greet.getStatus() == ExecutionStatus.EXECUTION_STATUS_COMPLETED,
          "transform step " + greet.getStatus());
      expect(
          greet.getOutput().toString().contains("Hello Java"),
          "transform step output " + compact(greet.getOutput().toString()));
      expect(execution.hasCompletedAt(), "completed_at is not set");
    } finally {
      if (workflowId != null && !workflowId.isEmpty()) {
        try {
          workflows().deleteWorkflow(DeleteWorkflowRequest.newBuilder().setWorkflowId(workflowId).build());
        } catch (StatusRuntimeException ignored) {
          // cleanup only
        }
      }
      try {
        agents().deleteAgent(DeleteAgentRequest.newBuilder().setAgentId(helper.getId()).build());
      } catch (StatusRuntimeException ignored) {
        // cleanup only
      }
    }
  }

  void notFound() throws InvalidProtocolBufferException {
    StatusRuntimeException e =
        expectError(
            () ->
                agents()
                    .getAgent(
                        GetAgentRequest.newBuilder().setAgentId("agent_missing_" + run).build()));
    expectCode(e, Status.Code.NOT_FOUND);
    com.google.rpc.Status status = statusProto(e);
    List<ErrorInfo> infos = unpackAll(status, ErrorInfo.class);
    expect(infos.size() == 1, "want exactly one ErrorInfo, got " + infos.size());
    ErrorInfo info = infos.get(0);
    expect("NOT_FOUND".equals(info.getReason()), "ErrorInfo.reason " + info.getReason());
    expect(!info.getDomain().isEmpty(), "ErrorInfo.domain is empty");
    expect(
        "404".equals(info.getMetadataOrDefault("http_status", "")),
        "ErrorInfo.metadata " + info.getMetadataMap());
  }

  void invalidAgentId() throws InvalidProtocolBufferException {
    StatusRuntimeException e =
        expectError(() -> agents().getAgent(GetAgentRequest.newBuilder().setAgentId("a/b").build()));
    expectCode(e, Status.Code.INVALID_ARGUMENT);
    com.google.rpc.Status status = statusProto(e);
    expect(unpackAll(status, ErrorInfo.class).size() == 1, "want exactly one ErrorInfo");
    List<BadRequest> bad = unpackAll(status, BadRequest.class);
    expect(bad.size() == 1, "want one BadRequest detail, got " + bad.size());
    List<String> fields = violationFields(bad.get(0));
    expect(fields.contains("agent_id"), "BadRequest field violations " + fields);
  }

  void listLimitTooLarge() throws InvalidProtocolBufferException {
    StatusRuntimeException e =
        expectError(() -> agents().listAgents(ListAgentsRequest.newBuilder().setLimit(500).build()));
    expectCode(e, Status.Code.INVALID_ARGUMENT);
    com.google.rpc.Status status = statusProto(e);
    List<BadRequest> bad = unpackAll(status, BadRequest.class);
    expect(bad.size() == 1, "want one BadRequest detail, got " + bad.size());
    List<String> fields = violationFields(bad.get(0));
    expect(!fields.isEmpty(), "BadRequest has no field violations");
    expect(
        fields.stream().anyMatch(f -> f.equals("limit") || f.endsWith(".limit")),
        "no violation names limit: " + fields);
  }

  void deadlineExceeded() {
    StatusRuntimeException e =
        expectError(
            () ->
                AgentServiceGrpc.newBlockingStub(channel)
                    .withInterceptors(credentials)
                    .withDeadlineAfter(1, TimeUnit.MICROSECONDS)
                    .listAgents(ListAgentsRequest.newBuilder().setLimit(10).build()));
    expectCode(e, Status.Code.DEADLINE_EXCEEDED);
  }

  void requestIdEchoed() {
    String requestId = "java-interop-ok-" + run;
    AtomicReference<Metadata> headers = new AtomicReference<>();
    AtomicReference<Metadata> trailers = new AtomicReference<>();
    Metadata sent = new Metadata();
    sent.put(REQUEST_ID, requestId);
    ListAgentsResponse page =
        agents()
            .withInterceptors(
                MetadataUtils.newAttachHeadersInterceptor(sent),
                MetadataUtils.newCaptureMetadataInterceptor(headers, trailers))
            .listAgents(ListAgentsRequest.newBuilder().setLimit(1).build());
    expect(page.getLimit() == 1, "limit " + page.getLimit());
    expect(trailers.get() != null, "no trailers captured");
    String echoed = trailers.get().get(REQUEST_ID);
    expect(requestId.equals(echoed), "trailer x-request-id " + echoed + ", want " + requestId);
  }

  void requestIdOnError() throws InvalidProtocolBufferException {
    String requestId = "java-interop-err-" + run;
    Metadata sent = new Metadata();
    sent.put(REQUEST_ID, requestId);
    StatusRuntimeException e =
        expectError(
            () ->
                agents()
                    .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(sent))
                    .getAgent(
                        GetAgentRequest.newBuilder().setAgentId("agent_gone_" + run).build()));
    expectCode(e, Status.Code.NOT_FOUND);
    List<RequestInfo> infos = unpackAll(statusProto(e), RequestInfo.class);
    expect(infos.size() == 1, "want one RequestInfo, got " + infos.size());
    expect(
        requestId.equals(infos.get(0).getRequestId()),
        "RequestInfo.request_id " + infos.get(0).getRequestId() + ", want " + requestId);
    Metadata trailers = Status.trailersFromThrowable(e);
    String echoed = trailers == null ? null : trailers.get(REQUEST_ID);
    expect(requestId.equals(echoed), "trailer x-request-id " + echoed + ", want " + requestId);
  }

  /**
   * With GATEWAY_INTEROP_PASSTHROUGH the gateway runs with GATEWAY_FORWARD_METADATA=x-tenant-id
   * and GATEWAY_RETURN_HEADERS=x-ratelimit-limit,x-ratelimit-remaining: two ListAgents with
   * x-tenant-id get the emulator's values in their headers, remaining one less the second time.
   */
  void returnedHeaders() {
    long first = returnedRemaining();
    long second = returnedRemaining();
    expect(
        second == first - 1,
        "x-ratelimit-remaining " + first + " then " + second + ", want one less per request");
  }

  /** One ListAgents with x-tenant-id: the x-ratelimit-remaining of its header metadata. */
  long returnedRemaining() {
    AtomicReference<Metadata> headers = new AtomicReference<>();
    AtomicReference<Metadata> trailers = new AtomicReference<>();
    Metadata sent = new Metadata();
    sent.put(TENANT_ID, "java-interop-" + run);
    agents()
        .withInterceptors(
            MetadataUtils.newAttachHeadersInterceptor(sent),
            MetadataUtils.newCaptureMetadataInterceptor(headers, trailers))
        .listAgents(ListAgentsRequest.newBuilder().setLimit(1).build());
    Metadata got = headers.get();
    expect(got != null, "no headers captured");
    String limit = got.get(RATE_LIMIT);
    String remaining = got.get(RATE_REMAINING);
    expect(
        limit != null && remaining != null,
        "x-ratelimit-limit " + limit + ", -remaining " + remaining + " in the headers: want both");
    expect(!got.containsKey(RATE_RESET), "x-ratelimit-reset returned, but it is not listed");
    long left = Long.parseLong(remaining);
    expect(left < Long.parseLong(limit), "x-ratelimit-remaining " + left + " >= limit " + limit);
    return left;
  }

  // ------------------------------------------------------------------ streaming checks

  /** An agent for one streaming check; deleted by {@link #deleteQuietly(Agent)}. */
  Agent streamAgent(String role, String... tools) {
    Agent.Builder draft =
        Agent.newBuilder()
            .setName("java-interop-stream-" + role + "-" + run)
            .setSystemPrompt("Answer briefly.");
    for (String tool : tools) {
      draft.addTools(tool);
    }
    Agent agent = agents().createAgent(CreateAgentRequest.newBuilder().setAgent(draft).build());
    expect(!agent.getId().isEmpty(), "CreateAgent for the stream returned no id");
    return agent;
  }

  void deleteQuietly(Agent agent) {
    try {
      agents().deleteAgent(DeleteAgentRequest.newBuilder().setAgentId(agent.getId()).build());
    } catch (StatusRuntimeException ignored) {
      // cleanup only
    }
  }

  void streamAgentRunToEnd() {
    Agent agent = streamAgent("run", "calculator");
    try {
      List<AgentRunEvent> events = new ArrayList<>();
      Iterator<AgentRunEvent> stream =
          agents()
              .streamAgentRun(
                  StreamAgentRunRequest.newBuilder()
                      .setAgentId(agent.getId())
                      .setMessage("What is 12 * 7? Then tell me about streams in Java.")
                      .setContext(struct("suite", "interop-java"))
                      .build());
      try {
        // hasNext() throws the call's status if it ends other than OK.
        while (stream.hasNext()) {
          events.add(stream.next());
        }
      } catch (StatusRuntimeException e) {
        throw new CheckFailed("the stream ended " + describe(e) + " after " + events.size() + " events");
      }
      int n = events.size();
      expect(n >= 4, n + " events, want run_started, content deltas, usage and run_completed");

      AgentRunEvent first = events.get(0);
      expect(first.hasRunStarted(), "first event " + compact(first.toString()) + ", want run_started");
      RunStarted started = first.getRunStarted();
      expect(!started.getRunId().isEmpty(), "run_started has no run_id");
      expect(
          agent.getId().equals(started.getAgentId()),
          "run_started.agent_id " + started.getAgentId() + ", want " + agent.getId());

      AgentRunEvent last = events.get(n - 1);
      expect(last.hasRunCompleted(), "last event " + compact(last.toString()) + ", want run_completed");
      AgentRun done = last.getRunCompleted();
      AgentRunEvent beforeLast = events.get(n - 2);
      expect(
          beforeLast.hasUsage(),
          "event before run_completed " + compact(beforeLast.toString()) + ", want usage");

      StringBuilder text = new StringBuilder();
      List<ToolCall> calls = new ArrayList<>();
      Set<String> ids = new HashSet<>();
      long previousId = Long.MIN_VALUE;
      boolean numericIds = true;
      int deltas = 0;
      for (int i = 0; i < n; i++) {
        AgentRunEvent ev = events.get(i);
        String id = ev.getEventId();
        expect(!id.isEmpty() && ids.add(id), "event " + i + " has an empty or repeated event_id '" + id + "'");
        if (numericIds) {
          try {
            long value = Long.parseLong(id);
            expect(value > previousId, "event_id " + id + " after " + previousId + " does not increase");
            previousId = value;
          } catch (NumberFormatException notNumeric) {
            numericIds = false;
          }
        }
        AgentRunEvent.EventCase kind = ev.getEventCase();
        expect(kind != AgentRunEvent.EventCase.EVENT_NOT_SET, "event " + i + " has no member set");
        expect(kind != AgentRunEvent.EventCase.ERROR, "event " + i + " is an error event: " + compact(ev.toString()));
        if (i > 0 && i < n - 2) {
          expect(
              kind == AgentRunEvent.EventCase.TOOL_CALL || kind == AgentRunEvent.EventCase.CONTENT_DELTA,
              "event " + i + " of " + n + " is " + kind + ", want tool_call or content_delta between run_started and usage");
        }
        if (kind == AgentRunEvent.EventCase.CONTENT_DELTA) {
          deltas++;
          text.append(ev.getContentDelta().getDelta());
        } else if (kind == AgentRunEvent.EventCase.TOOL_CALL) {
          calls.add(ev.getToolCall());
        }
      }
      expect(deltas > 0, "no content_delta among " + n + " events");
      expect(
          text.toString().equals(done.getContent()),
          "the deltas concatenate to '" + compact(text.toString()) + "', run_completed.content is '"
              + compact(done.getContent()) + "'");
      expect(!done.getContent().isEmpty(), "run_completed.content is empty");
      expect(
          started.getRunId().equals(done.getId()),
          "run_completed.id " + done.getId() + ", run_started.run_id " + started.getRunId());
      expect(
          agent.getId().equals(done.getAgentId()),
          "run_completed.agent_id " + done.getAgentId() + ", want " + agent.getId());
      TokenUsage usage = beforeLast.getUsage();
      expect(usage.getTotalTokens() > 0, "usage " + compact(usage.toString()));
      expect(
          usage.equals(done.getUsage()),
          "usage event " + compact(usage.toString()) + " differs from run_completed.usage "
              + compact(done.getUsage().toString()));
      expect(
          !calls.isEmpty() && "calculator".equals(calls.get(0).getName()),
          "no calculator tool_call event for '12 * 7': " + calls.size() + " tool calls");
      expect(
          calls.equals(done.getToolCallsList()),
          "tool_call events " + compact(calls.toString()) + " differ from run_completed.tool_calls "
              + compact(done.getToolCallsList().toString()));
    } finally {
      deleteQuietly(agent);
    }
  }

  void streamAgentRunCancel() throws InterruptedException {
    Agent agent = streamAgent("cancel");
    try {
      List<String> words = new ArrayList<>();
      for (int i = 0; i < 200; i++) {
        words.add("word" + i);
      }
      StreamAgentRunRequest request =
          StreamAgentRunRequest.newBuilder()
              .setAgentId(agent.getId())
              .setMessage("Please repeat: " + String.join(" ", words))
              .build();
      List<AgentRunEvent> events = Collections.synchronizedList(new ArrayList<>());
      AtomicReference<Throwable> error = new AtomicReference<>();
      AtomicLong cancelledAt = new AtomicLong();
      AtomicLong endedAt = new AtomicLong();
      CountDownLatch ended = new CountDownLatch(1);
      agentsAsync()
          .withDeadlineAfter(30, TimeUnit.SECONDS)
          .streamAgentRun(
              request,
              new ClientResponseObserver<StreamAgentRunRequest, AgentRunEvent>() {
                private ClientCallStreamObserver<StreamAgentRunRequest> call;

                @Override
                public void beforeStart(ClientCallStreamObserver<StreamAgentRunRequest> call) {
                  this.call = call;
                }

                @Override
                public void onNext(AgentRunEvent event) {
                  events.add(event);
                  if (events.size() == 1) {
                    cancelledAt.set(System.nanoTime());
                    call.cancel("interop: cancelled after the first event", null);
                  }
                }

                @Override
                public void onError(Throwable t) {
                  endedAt.set(System.nanoTime());
                  error.set(t);
                  ended.countDown();
                }

                @Override
                public void onCompleted() {
                  endedAt.set(System.nanoTime());
                  ended.countDown();
                }
              });
      expect(ended.await(20, TimeUnit.SECONDS), "the call did not end within 20 s (" + events.size() + " events)");
      Throwable t = error.get();
      expect(!events.isEmpty(), "the call ended before any event: " + t);
      expect(
          events.get(0).hasRunStarted(),
          "first event " + compact(events.get(0).toString()) + ", want run_started");
      expect(t != null, "the stream ended OK after the cancel (" + events.size() + " events), want CANCELLED");
      Status status = Status.fromThrowable(t);
      expect(
          status.getCode() == Status.Code.CANCELLED,
          "after the cancel: " + status.getCode() + " (" + status.getDescription() + "), want CANCELLED");
      long afterCancelMs = TimeUnit.NANOSECONDS.toMillis(endedAt.get() - cancelledAt.get());
      expect(afterCancelMs < 1_000, "the call ended " + afterCancelMs + " ms after the cancel");
      synchronized (events) {
        for (AgentRunEvent ev : events) {
          expect(!ev.hasRunCompleted(), "the run completed despite the cancel");
        }
      }
      // The gateway closes the upstream stream: the run's execution must end CANCELLED, not
      // run on to COMPLETED.
      String runId = events.get(0).getRunStarted().getRunId();
      Execution execution = null;
      long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      while (execution == null || !TERMINAL.contains(execution.getStatus())) {
        if (System.nanoTime() > until) {
          throw new CheckFailed(
              "the agent execution of run " + runId + " is "
                  + (execution == null ? "not listed" : execution.getStatus().toString())
                  + " 10 s after the cancel");
        }
        Thread.sleep(100);
        execution = null;
        for (Execution e :
            executions().listExecutions(ListExecutionsRequest.newBuilder().setLimit(100).build()).getDataList()) {
          if (e.getType() == ExecutionType.EXECUTION_TYPE_AGENT && agent.getId().equals(e.getResourceId())) {
            execution = e;
          }
        }
      }
      expect(
          execution.getStatus() == ExecutionStatus.EXECUTION_STATUS_CANCELLED,
          "the cancelled run's execution ended " + execution.getStatus() + " (" + execution.getError() + ")");
    } finally {
      deleteQuietly(agent);
    }
  }

  void watchExecutionToTerminal() {
    String workflowId = null;
    try {
      Workflow workflow =
          workflows()
              .createWorkflow(
                  CreateWorkflowRequest.newBuilder()
                      .setWorkflow(
                          Workflow.newBuilder()
                              .setName("java-interop-watch-" + run)
                              .setDescription("two transforms, watched")
                              .addSteps(
                                  WorkflowStep.newBuilder()
                                      .setId("greet")
                                      .setType("transform")
                                      .setName("Greeting")
                                      .setConfig(struct("template", "Hello {{input.name}}")))
                              .addSteps(
                                  WorkflowStep.newBuilder()
                                      .setId("shout")
                                      .setType("transform")
                                      .setName("Again")
                                      .setConfig(struct("template", "{{greet.output}}, again"))))
                      .build());
      workflowId = workflow.getId();
      expect(workflow.getStepsCount() == 2, "workflow has " + workflow.getStepsCount() + " steps");
      Execution triggered =
          workflows()
              .triggerWorkflow(
                  TriggerWorkflowRequest.newBuilder()
                      .setWorkflowId(workflowId)
                      .setInput(struct("name", "Duke"))
                      .build());
      String id = triggered.getId();
      expect(!id.isEmpty(), "TriggerWorkflow returned no execution id");

      List<Execution> states = new ArrayList<>();
      Iterator<Execution> stream =
          executions().watchExecution(WatchExecutionRequest.newBuilder().setExecutionId(id).build());
      try {
        while (stream.hasNext()) {
          Execution state = stream.next();
          expect(id.equals(state.getId()), "a state of execution " + state.getId() + ", want " + id);
          ExecutionStatus status = state.getStatus();
          expect(rank(status) > 0, "state " + states.size() + " has status " + status);
          if (!states.isEmpty()) {
            Execution prev = states.get(states.size() - 1);
            expect(
                !TERMINAL.contains(prev.getStatus()),
                "a state (" + status + ") after the terminal " + prev.getStatus());
            expect(
                rank(status) >= rank(prev.getStatus()),
                "status went back from " + prev.getStatus() + " to " + status);
            expect(
                !prev.equals(state),
                "state " + states.size() + " repeats the previous one: " + compact(state.toString()));
            expect(
                state.getStepResultsCount() >= prev.getStepResultsCount(),
                "step_results shrank from " + prev.getStepResultsCount() + " to " + state.getStepResultsCount());
          }
          states.add(state);
        }
      } catch (StatusRuntimeException e) {
        throw new CheckFailed("the watch ended " + describe(e) + " after " + states.size() + " states");
      }
      expect(!states.isEmpty(), "the watch ended OK without any state");
      Execution last = states.get(states.size() - 1);
      expect(
          last.getStatus() == ExecutionStatus.EXECUTION_STATUS_COMPLETED,
          "the watch ended OK at " + last.getStatus() + " (" + last.getError() + "), want COMPLETED");
      expect(last.getStepResultsCount() == 2, "the last state has " + last.getStepResultsCount() + " step results");
      expect(
          last.getStepResults(1).getOutput().toString().contains("Hello Duke, again"),
          "second transform's output " + compact(last.getStepResults(1).getOutput().toString()));
      expect(last.hasCompletedAt(), "completed_at is not set");
      Execution fetched =
          executions().getExecution(GetExecutionRequest.newBuilder().setExecutionId(id).build());
      expect(
          fetched.getStatus() == last.getStatus() && fetched.getStepResultsCount() == 2,
          "GetExecution after the watch: " + fetched.getStatus() + ", " + fetched.getStepResultsCount() + " steps");
    } finally {
      if (workflowId != null && !workflowId.isEmpty()) {
        try {
          workflows().deleteWorkflow(DeleteWorkflowRequest.newBuilder().setWorkflowId(workflowId).build());
        } catch (StatusRuntimeException ignored) {
          // cleanup only
        }
      }
    }
  }

  /** Order of statuses: pending, running, then a terminal one; 0 for unspecified/unknown. */
  static int rank(ExecutionStatus status) {
    switch (status) {
      case EXECUTION_STATUS_PENDING:
        return 1;
      case EXECUTION_STATUS_RUNNING:
        return 2;
      case EXECUTION_STATUS_COMPLETED:
      case EXECUTION_STATUS_FAILED:
      case EXECUTION_STATUS_CANCELLED:
        return 3;
      default:
        return 0;
    }
  }

  // ------------------------------------------------------------------ helpers

  String needAgent() {
    if (agentId == null) {
      throw new CheckFailed("skipped: no agent (agent.create failed)");
    }
    return agentId;
  }

  static void expect(boolean ok, String why) {
    if (!ok) {
      throw new CheckFailed(why);
    }
  }

  static StatusRuntimeException expectError(Runnable call) {
    try {
      call.run();
    } catch (StatusRuntimeException e) {
      return e;
    }
    throw new CheckFailed("the call succeeded; an error was expected");
  }

  static void expectCode(StatusRuntimeException e, Status.Code want) {
    Status.Code got = e.getStatus().getCode();
    expect(got == want, "want " + want + ", got " + describe(e));
  }

  static com.google.rpc.Status statusProto(StatusRuntimeException e) {
    com.google.rpc.Status status = StatusProto.fromThrowable(e);
    expect(status != null, "no grpc-status-details-bin on " + describe(e));
    expect(
        status.getCode() == e.getStatus().getCode().value(),
        "google.rpc.Status code " + status.getCode() + " differs from the call's");
    return status;
  }

  static <T extends com.google.protobuf.Message> List<T> unpackAll(
      com.google.rpc.Status status, Class<T> type) throws InvalidProtocolBufferException {
    List<T> found = new ArrayList<>();
    for (Any detail : status.getDetailsList()) {
      if (detail.is(type)) {
        found.add(detail.unpack(type));
      }
    }
    return found;
  }

  static List<String> violationFields(BadRequest bad) {
    List<String> fields = new ArrayList<>();
    for (BadRequest.FieldViolation v : bad.getFieldViolationsList()) {
      fields.add(v.getField());
    }
    return fields;
  }

  static String describe(StatusRuntimeException e) {
    Status s = e.getStatus();
    return s.getCode() + (s.getDescription() == null ? "" : " (" + s.getDescription() + ")");
  }

  static Struct struct(String... keysAndValues) {
    Struct.Builder b = Struct.newBuilder();
    for (int i = 0; i + 1 < keysAndValues.length; i += 2) {
      b.putFields(keysAndValues[i], Value.newBuilder().setStringValue(keysAndValues[i + 1]).build());
    }
    return b.build();
  }

  static String compact(String text) {
    String one = text.replaceAll("\\s+", " ").trim();
    return one.length() > 200 ? one.substring(0, 200) + "…" : one;
  }
}

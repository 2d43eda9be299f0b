"""Jenkins folders and jobs for swimlanes (``python-jenkins``).

A lane ``<lane>`` owns one Jenkins folder ``<lane>`` holding one job per application,
``<lane>/<app>``, which builds the lane branch ``feature/<lane>``. Jobs are rendered from a
config.xml template with the placeholders ``{lane}``, ``{app}`` and ``{branch}`` (plus any
extra values the caller passes), so teams keep their own pipeline shape.

Every operation is idempotent, because the activities calling it may run twice: ensuring a
folder or job that exists is a no-op or a reconfig, deleting a missing folder is fine. The
``ensure_*`` methods report whether they created something, so the lane's ledger records only
what the lane itself created.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

import jenkins

log = logging.getLogger(__name__)

# A CloudBees folder (the folders plugin ships with every Jenkins since 2.x). Created through
# createItem with this XML rather than python-jenkins' form-based create_folder, because the
# XML path reports "already exists" distinctly and matches how jobs are created.
FOLDER_XML = """<?xml version='1.1' encoding='UTF-8'?>
<com.cloudbees.hudson.plugins.folder.Folder plugin="cloudbees-folder">
  <description>Slipway swimlane {lane}: one job per application, building {branch}.</description>
  <properties/>
  <folderViews class="com.cloudbees.hudson.plugins.folder.views.DefaultFolderViewHolder">
    <views>
      <hudson.model.AllView>
        <owner class="com.cloudbees.hudson.plugins.folder.Folder" reference="../../../.."/>
        <name>All</name>
        <filterExecutors>false</filterExecutors>
        <filterQueue>false</filterQueue>
        <properties class="hudson.model.View$PropertyImpl"/>
      </hudson.model.AllView>
    </views>
    <tabBar class="hudson.views.DefaultViewsTabBar"/>
  </folderViews>
  <healthMetrics/>
  <icon class="com.cloudbees.hudson.plugins.folder.icons.StockFolderIcon"/>
</com.cloudbees.hudson.plugins.folder.Folder>
"""

# A parameterised pipeline job honouring the JenkinsBuilder contract (REF, VERSION, NOTE in;
# IMAGE=/DIGEST= lines in the build description out). REF defaults to the lane branch, so a
# push-triggered build with no parameters builds the lane. {git_url} and {registry} are extra
# values (empty unless the caller passes them); the Groovy `${...}` is left alone because
# placeholders are replaced literally, not with str.format.
DEFAULT_JOB_TEMPLATE = """<?xml version='1.1' encoding='UTF-8'?>
<flow-definition plugin="workflow-job">
  <description>Slipway swimlane {lane}: builds {app} from {branch}.</description>
  <keepDependencies>false</keepDependencies>
  <properties>
    <hudson.model.ParametersDefinitionProperty>
      <parameterDefinitions>
        <hudson.model.StringParameterDefinition>
          <name>REF</name>
          <defaultValue>{branch}</defaultValue>
          <trim>true</trim>
        </hudson.model.StringParameterDefinition>
        <hudson.model.StringParameterDefinition>
          <name>VERSION</name>
          <defaultValue>{lane}</defaultValue>
          <trim>true</trim>
        </hudson.model.StringParameterDefinition>
        <hudson.model.StringParameterDefinition>
          <name>NOTE</name>
          <defaultValue>swimlane {lane}</defaultValue>
        </hudson.model.StringParameterDefinition>
        <hudson.model.StringParameterDefinition>
          <name>GIT_URL</name>
          <defaultValue>{git_url}</defaultValue>
          <trim>true</trim>
        </hudson.model.StringParameterDefinition>
        <hudson.model.StringParameterDefinition>
          <name>REGISTRY</name>
          <defaultValue>{registry}</defaultValue>
          <trim>true</trim>
        </hudson.model.StringParameterDefinition>
      </parameterDefinitions>
    </hudson.model.ParametersDefinitionProperty>
  </properties>
  <definition class="org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition" plugin="workflow-cps">
    <script>pipeline {
  agent any
  environment { LANE = '{lane}'; APP = '{app}' }
  stages {
    stage('checkout') {
      steps {
        checkout([$class: 'GitSCM', branches: [[name: params.REF]],
                  userRemoteConfigs: [[url: params.GIT_URL]]])
      }
    }
    stage('image') {
      steps {
        script {
          def image = "${params.REGISTRY}/${env.APP}:${params.VERSION}"
          sh "docker build -t ${image} . &amp;&amp; docker push ${image}"
          def digest = sh(returnStdout: true, script:
            "docker inspect --format='{{index .RepoDigests 0}}' ${image} | cut -d@ -f2").trim()
          currentBuild.description = "IMAGE=${image}\\nDIGEST=${digest}"
        }
      }
    }
  }
}</script>
    <sandbox>true</sandbox>
  </definition>
  <disabled>false</disabled>
</flow-definition>
"""


def lane_branch(lane: str) -> str:
    """The git branch a lane builds: ``feature/<lane>``."""
    return f"feature/{lane}"


def render(template_xml: str, values: Mapping[str, str]) -> str:
    """Replace each ``{name}`` in the template with its XML-escaped value.

    Literal replacement (not ``str.format``) because job XML embeds Groovy, whose braces would
    otherwise have to be doubled in every template a team writes.
    """
    rendered = template_xml
    for name, value in values.items():
        rendered = rendered.replace("{" + name + "}", escape(value))
    return rendered


def _check_name(kind: str, name: str) -> None:
    # A slash would address a nested folder; an empty name would address the Jenkins root.
    if not name or "/" in name:
        raise ValueError(f"invalid Jenkins {kind} name {name!r}: must be non-empty, without '/'")


class JenkinsLanes:
    """Creates and removes a lane's Jenkins folder and per-application jobs."""

    def __init__(self, url: str, username: str, token: str, timeout: float = 30.0) -> None:
        self.url = url
        # Per-request timeout: a hung Jenkins must not outlive the activity's timeout.
        self.server = jenkins.Jenkins(url, username=username or None, password=token or None,
                                      timeout=timeout)

    def ensure_folder(self, lane: str) -> bool:
        """Create folder ``<lane>`` unless it exists; return whether it was created."""
        _check_name("folder", lane)
        if self.server.job_exists(lane):
            return False
        xml = render(FOLDER_XML, {"lane": lane, "branch": lane_branch(lane)})
        try:
            self.server.create_job(lane, xml)
        except jenkins.JenkinsException:
            # Another run of the same activity may have won the race: that is success.
            if self.server.job_exists(lane):
                return False
            raise
        return True

    def ensure_job(self, lane: str, app: str, template_xml: str = DEFAULT_JOB_TEMPLATE,
                   values: Mapping[str, str] | None = None) -> bool:
        """Create job ``<lane>/<app>`` from the template, or reconfigure it if it exists.

        Returns whether the job was created. Reconfiguring an existing job keeps its build
        history while bringing its config in line with the template.
        """
        _check_name("folder", lane)
        _check_name("job", app)
        substitutions: dict[str, str] = {"git_url": "", "registry": ""}
        substitutions.update(values or {})
        substitutions.update(lane=lane, app=app, branch=lane_branch(lane))
        xml = render(template_xml, substitutions)
        name = f"{lane}/{app}"
        if self.server.job_exists(name):
            self.server.reconfig_job(name, xml)
            return False
        self.server.create_job(name, xml)
        return True

    def delete_folder(self, lane: str) -> bool:
        """Delete folder ``<lane>`` with its jobs; return whether there was one to delete."""
        _check_name("folder", lane)
        if not self.server.job_exists(lane):
            return False
        try:
            self.server.delete_job(lane)
        except jenkins.NotFoundException:
            return False  # deleted between the check and the request: the goal is reached
        return True

    def delete_job(self, lane: str, app: str) -> bool:
        """Delete job ``<lane>/<app>``; return whether there was one to delete."""
        _check_name("folder", lane)
        _check_name("job", app)
        name = f"{lane}/{app}"
        if not self.server.job_exists(name):
            return False
        try:
            self.server.delete_job(name)
        except jenkins.NotFoundException:
            return False
        return True

    def jobs(self, lane: str) -> list[str]:
        """Short names of the jobs in folder ``<lane>`` (empty when the folder is missing)."""
        _check_name("folder", lane)
        if not self.server.job_exists(lane):
            return []
        info: Mapping[str, Any] = self.server.get_job_info(lane)
        return sorted(str(job["name"]) for job in info.get("jobs") or [])
